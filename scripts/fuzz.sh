#!/usr/bin/env bash
# Build every libFuzzer target of tests/fuzz/ with clang (fuzzer, address and
# undefined-behaviour sanitizers) and run each for SECONDS seconds on a copy
# of its committed seed corpus. A target that crashes, leaks or times out
# fails. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=build/fuzz
mkdir -p "$out"

pkgs="rdkafka avro-c jansson libpq openssl libcurl"
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 \
-D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iservices/common -Iservices/kms -Itests/unit"
# The project's sources, minus the programs' main files and the I/O modules
# a target does not need.
core=$(ls services/common/*.c services/kms/*.c | grep -v -E '/(main|service(_[a-z]+)?|health|store(_[a-z]+)?|trust(_[a-z]+)?|fetch)\.c$')
# The tests' key helper (fuzz_token makes its trusted key with it).
core="$core tests/unit/testkeys.c"

make -s SANITIZE= BUILD=build build/gen/schemas.c build/gen/migrations.c || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
for src in tests/fuzz/fuzz_*.c; do
	[ -e "$src" ] || continue
	name=$(basename "$src" .c)
	bin="$out/$name"
	# shellcheck disable=SC2086
	if ! clang $cflags $(pkg-config --cflags $pkgs | sed 's/-I/-isystem /g') -o "$bin" "$src" $core \
		build/gen/schemas.c build/gen/migrations.c $(pkg-config --libs $pkgs) -lm 2>"$out/$name.build.log"; then
		echo "FAIL fuzz.$name (build; see $out/$name.build.log)"
		tail -n 20 "$out/$name.build.log"
		failed=$((failed + 1))
		continue
	fi
	seeds="tests/fuzz/corpus/${name#fuzz_}"
	work="$out/corpus-$name"
	mkdir -p "$work"
	[ -d "$seeds" ] && cp -n "$seeds"/* "$work"/ 2>/dev/null
	if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$out/$name-" "$work" >"$out/$name.log" 2>&1; then
		execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$out/$name.log" | grep -oE '[0-9]+$')
		rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$out/$name.log" | grep -oE '[0-9]+$')
		echo "PASS fuzz.$name ${execs:-?} executions, ${rate:-?}/s in ${seconds}s"
		passed=$((passed + 1))
	else
		echo "FAIL fuzz.$name (see $out/$name.log)"
		grep -E 'ERROR|SUMMARY|artifact' "$out/$name.log" | head -n 10
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
