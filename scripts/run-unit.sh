#!/usr/bin/env bash
# Run the C test suites given as arguments (the unit tests, or the C
# integration suites against the stack); under valgrind memcheck (leaks are
# errors) when VALGRIND=1. Prints each suite's lines and a closing
# "N passed, N failed" over all suites; exits non-zero on any failure.
set -uo pipefail
# shellcheck source=scripts/lib/counts.sh
. "$(dirname "$0")/lib/counts.sh"
passed=0
failed=0
for t in "$@"; do
	name=$(basename "$t")
	if [ "${VALGRIND:-0}" = 1 ]; then
		out=$(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect \
			--errors-for-leak-kinds=definite,indirect --error-exitcode=99 "$t" 2>&1)
	else
		out=$("$t" 2>&1)
	fi
	rc=$?
	printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$' | sed "s/^/[$name] /"
	if ! counts_read "$out"; then
		echo "[$name] no result line (exit $rc)"
		failed=$((failed + 1))
		continue
	fi
	passed=$((passed + counts_passed))
	failed=$((failed + counts_failed))
	if [ "$rc" -ne 0 ] && [ "$counts_failed" -eq 0 ]; then
		echo "[$name] exit $rc (memory errors or leaks)"
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
