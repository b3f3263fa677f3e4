#!/usr/bin/env bash
# make golden: regenerate the golden corpus of tests/fixtures/golden (the
# recording of a requests topic and of the Results a KM-S of this build gave
# it) on the local stack. Run it when the contract changes on purpose, then
# read the new Results (git diff tests/fixtures/golden) before committing
# them: the regression replay of make test holds every later build to them.
# The stack is brought up if needed, and down again if it was not running.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${KMS_CACHE:-$HOME/.cache/seal-kms}
venv=${KMS_VENV:-$cache/venv}
make -s -j"$(nproc)"
export KMS_BUILD=${KMS_BUILD:-build}

was_up=1
scripts/stack status >/dev/null 2>&1 || was_up=0
if [ "$was_up" -eq 0 ]; then
	scripts/stack up >/dev/null
	trap 'scripts/stack down >/dev/null 2>&1' EXIT
fi
eval "$(scripts/stack env)"
"$venv/bin/python" tests/python/golden.py "$@"
