#!/usr/bin/env bash
# make test: install what is missing, build, bring the stack up, run every
# test layer (C unit tests under valgrind, the fuzz targets briefly, then the
# integration layer against the real broker and database: the C integration
# suites under valgrind, and the integration, end-to-end and fault tests of
# pytest), and end with one line "N passed, N failed" over all layers.
#
# The stack is left as it was found: components this run started are stopped
# at the end whatever happened; a stack (or part of one) that was already
# running stays up, so a developer's stack survives a `make test`.
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

# shellcheck source=scripts/lib/counts.sh
. scripts/lib/counts.sh
# shellcheck source=scripts/lib/stack-keep.sh
. scripts/lib/stack-keep.sh
total_passed=0
total_failed=0
add_counts() { # FILE: a layer's output, ending with its "N passed, N failed"
	if counts_read "$(cat "$1")"; then
		total_passed=$((total_passed + counts_passed))
		total_failed=$((total_failed + counts_failed))
	else
		total_failed=$((total_failed + 1))
	fi
}

# The C suites, named from their sources so that a stale binary in build/
# (a suite since moved or removed) is not run.
unit=()
for src in tests/unit/test_*.c; do unit+=("$build/tests/$(basename "$src" .c)"); done
integration=()
for src in tests/integration/test_*.c; do
	[ -e "$src" ] && integration+=("$build/tests/integration/$(basename "$src" .c)")
done
valgrind=1
[ -z "$SANITIZE" ] || valgrind=0

# What of the stack runs before this run: the rest is stopped at the end.
stack_keep_note

log=$(mktemp -d)
trap 'stack_keep_restore; rm -rf "$log"' EXIT

echo "== stack"
if ! KMS_SKIP_DEPS=1 scripts/stack up; then
	echo "stack did not come up"
	total_failed=$((total_failed + 1))
	echo "$total_passed passed, $total_failed failed"
	exit 1
fi
eval "$(scripts/stack env)"

echo "== C unit tests"
VALGRIND=$valgrind scripts/run-unit.sh "${unit[@]}" | tee "$log/unit"
add_counts "$log/unit"

echo "== fuzz targets (${KMS_FUZZ_SECONDS:-15} s each)"
scripts/fuzz.sh "${KMS_FUZZ_SECONDS:-15}" | tee "$log/fuzz"
add_counts "$log/fuzz"

if [ ${#integration[@]} -gt 0 ]; then
	echo "== C integration tests (against the stack's database)"
	VALGRIND=$valgrind scripts/run-unit.sh "${integration[@]}" | tee "$log/integration"
	add_counts "$log/integration"
fi

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
add_counts "$log/pycount"

[ -z "$stack_keep_running" ] || echo "== the stack stays up as it was found (${stack_keep_running% })"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
