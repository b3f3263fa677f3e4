# shellcheck shell=bash
# Sourced by the test scripts: the one reader of the closing line
# "N passed, N failed" that every test layer prints (the C suites, the fuzz
# targets, the pytest summary of test.sh).

# counts_read TEXT: set counts_passed and counts_failed from the last such
# line of TEXT; return 1, leaving them 0, when TEXT has none.
counts_read() {
	local line
	counts_passed=0
	counts_failed=0
	line=$(printf '%s\n' "$1" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
	[ -n "$line" ] || return 1
	counts_passed=${line%% passed*}
	counts_failed=${line#*, }
	counts_failed=${counts_failed%% failed*}
}
