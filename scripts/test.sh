#!/usr/bin/env bash
# make test: install what is missing, build, bring the stack up, run every
# test layer (C unit tests under valgrind, the fuzz targets briefly, then the
# integration, end-to-end and fault tests against the real broker and
# database), bring the stack down whatever happened, and end with one line
# "N passed, N failed" over all layers.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }

SANITIZE=${SANITIZE:-}
if [ -n "$SANITIZE" ]; then
	build=build/san
else
	build=build
fi
make -s -j"$(nproc)" SANITIZE="$SANITIZE" || { echo "0 passed, 1 failed"; exit 1; }
export KMS_BUILD="$top/$build"
cache=${KMS_CACHE:-$HOME/.cache/seal-kms}
venv=${KMS_VENV:-$cache/venv}

total_passed=0
total_failed=0
add_counts() { # "N passed, N failed" line on stdin
	local line p f
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
	if [ -z "$line" ]; then
		total_failed=$((total_failed + 1))
		return
	fi
	p=${line%% passed*}
	f=${line#*, }
	f=${f%% failed*}
	total_passed=$((total_passed + p))
	total_failed=$((total_failed + f))
}

log=$(mktemp -d)
trap 'scripts/stack down >/dev/null 2>&1; rm -rf "$log"' EXIT

echo "== stack"
if ! KMS_SKIP_DEPS=1 scripts/stack up; then
	echo "stack did not come up"
	total_failed=$((total_failed + 1))
	echo "$total_passed passed, $total_failed failed"
	exit 1
fi
eval "$(scripts/stack env)"

echo "== C unit tests (the store's against the stack's database)"
if [ -n "$SANITIZE" ]; then
	scripts/run-unit.sh "$build"/tests/test_* | tee "$log/unit"
else
	VALGRIND=1 scripts/run-unit.sh "$build"/tests/test_* | tee "$log/unit"
fi
add_counts <"$log/unit"

echo "== fuzz targets (${KMS_FUZZ_SECONDS:-15} s each)"
scripts/fuzz.sh "${KMS_FUZZ_SECONDS:-15}" | tee "$log/fuzz"
add_counts <"$log/fuzz"

echo "== integration, end-to-end and fault tests"
"$venv/bin/python" -m pytest -p no:cacheprovider -q -rfEs --junitxml="$log/junit.xml" tests/python "$@"
"$venv/bin/python" - "$log/junit.xml" <<'PY' | tee "$log/pycount"
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 passed, 1 failed")
    sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
tests = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(f"pytest: {tests - bad - skipped} passed, {bad} failed, {skipped} skipped")
print(f"{tests - bad - skipped} passed, {bad + (1 if tests == 0 else 0)} failed")
PY
add_counts <"$log/pycount"

echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
