#!/usr/bin/env bash
# make golden: regenerate the golden corpus of tests/fixtures/golden (the
# recording of a requests topic and of the Results a KM-S of this build gave
# it) on the local stack. Run it when the contract changes on purpose, then
# read the new Results (git diff tests/fixtures/golden) before committing
# them: the regression replay of make test holds every later build to them.
# The stack is brought up if needed; what this run started is stopped again.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${KMS_CACHE:-$HOME/.cache/seal-kms}
venv=${KMS_VENV:-$cache/venv}
make -s -j"$(nproc)"
export KMS_BUILD=${KMS_BUILD:-build}

# shellcheck source=scripts/lib/stack-keep.sh
. scripts/lib/stack-keep.sh
stack_keep_note
trap stack_keep_restore EXIT
scripts/stack up >/dev/null
eval "$(scripts/stack env)"
"$venv/bin/python" tests/python/golden.py "$@"
