# shellcheck shell=bash
# Sourced by the scripts that bring the stack up for their own work (test.sh,
# golden.sh): they leave it as they found it, stopping at the end only the
# components (kafka, postgres, registry) that they started themselves.

# stack_keep_note: remember what of the stack runs now.
stack_keep_note() {
	local status
	# status exits non-zero when anything is stopped: that is an answer here
	status=$(scripts/stack status 2>/dev/null) || true
	stack_keep_running=$(printf '%s\n' "$status" |
		sed -n -E 's/^(kafka|postgres|registry): running.*/\1/p' | tr '\n' ' ')
}

# stack_keep_restore: stop what was not running at stack_keep_note.
stack_keep_restore() {
	local c
	if [ -z "$stack_keep_running" ]; then
		scripts/stack down >/dev/null 2>&1
		return
	fi
	for c in kafka postgres registry; do
		case " $stack_keep_running" in
		*" $c "*) ;;
		*) scripts/stack "${c/postgres/pg}-stop" >/dev/null 2>&1 ;;
		esac
	done
}
