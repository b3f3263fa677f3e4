#!/usr/bin/env bash
# make bench: how fast the KM-S turns requests into Results, next to how fast
# PostgreSQL itself runs the KM-S's writes, in one run on the local stack, so
# that the machine's noise falls on every figure alike. One table, then the
# ratios, with the targets beside the figures:
#
#   pg limit     pgbench, one connection, running the KM-S's own set-based
#                write statements (services/kms/sql/w*.sql, read at bench
#                time, so the benchmark cannot drift from the code): one
#                transaction = BENCH_PG_BATCH requests (audit, decision, VAL
#                server, two key formats each, the provider's count)
#   drain        the KM-S started on a backlog pre-produced by valctl fleet
#                (VAL servers with two services each, every one with its own
#                token); requests per second between the first and the last
#                Result, so the KM-S's start is not counted
#   drain-no-eos the same backlog with --exactly-once false (no Kafka
#                transactions: idempotent producer, offset commits)
#   latency      send-to-Result p50/p95/p99 at a fixed offered rate, the KM-S
#                running and idle when the load starts (a few warm-up
#                requests first: the first fetches after a start are slow)
#   latency-no-eos  the same with --exactly-once false
#   drain-confluent  the drain case with every request Confluent-framed
#                (valctl fleet --framing confluent, the schema id from the
#                stack's registry) and so every Result; its ratio to the
#                single-object drain is what the framing costs
#   batch-max 1  the drain case with --batch-max 1 (one transaction per
#                request), on a smaller backlog
#   rss          the KM-S's peak RSS (VmHWM, read before it is stopped) while
#                draining a large backlog; every KM-S row shows its own
#   scrape       what the metrics cost: drains of a smaller backlog, by
#                turns without (scrape-off-N) and with (scrape-on-N) a scraper
#                that GETs /metrics 100 times a second over one kept-alive
#                connection; the ratio is of the medians, as one drain's
#                noise on a shared machine is larger than the cost
#
# Every KM-S case runs with Kafka transactions (exactly_once, the default)
# unless its name ends in -no-eos; valctl reads the Results read_committed,
# so a Result counts when its transaction has committed.
#
# Every KM-S case gets a fresh, migrated database, its own requests and
# results topics and its own consumer group, so nothing of one case reaches
# another; the KM-S is stopped, the database dropped and the topics deleted
# when the case ends, failed or not. A case that fails still prints its row
# (marked FAILED) and makes the script exit 1. Every wait is bounded. To add
# a case, add a run_kms_case line (and a ratio or target line) at the end.
#
# Environment (sizes are servers x requests per server):
#   BENCH_PG_SECONDS        pgbench duration (default 10)
#   BENCH_PG_BATCH          requests per pgbench transaction (default 500)
#   BENCH_DRAIN_SERVERS     drain case (default 1000 x 20)
#   BENCH_DRAIN_REQUESTS
#   BENCH_LATENCY_RATE      latency case: offered requests per second (1000)
#   BENCH_LATENCY_SERVERS   latency case (default 1000 x 10)
#   BENCH_LATENCY_REQUESTS
#   BENCH_BATCH1_SERVERS    batch-max 1 case (default 200 x 10)
#   BENCH_BATCH1_REQUESTS
#   BENCH_RSS_SERVERS       rss case (default 1000 x 100)
#   BENCH_RSS_REQUESTS
#   BENCH_PARTITIONS        partitions of each case's topics (default 6, as the
#                           contract's requests topic)
#   BENCH_TIMEOUT           seconds a case may wait for its Results after its
#                           last send (default 300)
#   BENCH_SCRAPE_RATE       scrape case: scrapes per second (100)
#   BENCH_SCRAPE_ROUNDS     scrape case: drains with and without (3 each)
#   BENCH_SCRAPE_SERVERS    scrape case (default 1000 x 20)
#   BENCH_SCRAPE_REQUESTS
#   BENCH_CASES             the cases to run, space-separated (default: all:
#                           pg-limit drain drain-no-eos drain-confluent latency
#                           latency-no-eos batch-max-1 rss scrape)
#   BENCH_KMS_FLAGS         more KM-S flags for every KM-S case, split at
#                           spaces (e.g. "-X queued.max.messages.kbytes=8192")
#   BENCH_KEEP              1: keep the work folder (logs, summaries, the
#                           generated pgbench script) and print its path
# and the stack's own (KMS_STACK_DIR, KMS_KAFKA_PORT, KMS_PG_PORT, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_seconds=${BENCH_PG_SECONDS:-10}
pg_batch=${BENCH_PG_BATCH:-500}
drain_servers=${BENCH_DRAIN_SERVERS:-1000}
drain_requests=${BENCH_DRAIN_REQUESTS:-20}
latency_rate=${BENCH_LATENCY_RATE:-1000}
latency_servers=${BENCH_LATENCY_SERVERS:-1000}
latency_requests=${BENCH_LATENCY_REQUESTS:-10}
batch1_servers=${BENCH_BATCH1_SERVERS:-200}
batch1_requests=${BENCH_BATCH1_REQUESTS:-10}
rss_servers=${BENCH_RSS_SERVERS:-1000}
rss_requests=${BENCH_RSS_REQUESTS:-100}
partitions=${BENCH_PARTITIONS:-6}
case_timeout=${BENCH_TIMEOUT:-300}
scrape_rate=${BENCH_SCRAPE_RATE:-100}
scrape_rounds=${BENCH_SCRAPE_ROUNDS:-3}
scrape_servers=${BENCH_SCRAPE_SERVERS:-1000}
scrape_requests=${BENCH_SCRAPE_REQUESTS:-20}
wanted=" ${BENCH_CASES:-pg-limit drain drain-no-eos drain-confluent latency latency-no-eos batch-max-1 rss scrape} "
pg_bin=${KMS_PG_BIN:-/usr/lib/postgresql/15/bin}
py=${KMS_VENV:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/seal-kms/venv}/bin/python

scripts/deps.sh >/dev/null
make -s -j"$(nproc)"
KMS_SKIP_DEPS=1 scripts/stack up >/dev/null
eval "$(scripts/stack env)"
export PGCONNECT_TIMEOUT=10
admin_dsn=$KMS_DSN
base_dsn=${KMS_DSN%/*}
tag=$$
work=$(mktemp -d) # under $TMPDIR, or /tmp
failed=0

finish() {
	if [ "${BENCH_KEEP:-}" = 1 ]; then
		echo "bench: work folder kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf 'bench: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- helpers

# bounded SECONDS COMMAND...: COMMAND, killed if it runs longer. In the
# foreground process group, so that a Ctrl-C reaches it.
bounded() { timeout --foreground -k 5 "$@"; }

# meta CASE KEY VALUE: one fact of a case for the report.
meta() { printf '%s=%s\n' "$2" "$3" >>"$work/$1.meta"; }

# kafka_admin create NAME... | delete NAME...: the case's topics, with the
# partition count the contract gives the requests topic.
kafka_admin() {
	bounded 90 "$py" - "$KMS_BOOTSTRAP" "$partitions" "$@" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, partitions, op, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
admin = AdminClient({"bootstrap.servers": bootstrap})
if op == "create":
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names],
                                  operation_timeout=30, request_timeout=30)
    for f in futures.values():
        f.result(timeout=60)
    # Creation returns before every partition has a leader.
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(timeout=10).topics
        if all(n in md and len(md[n].partitions) == partitions and
               all(p.leader >= 0 for p in md[n].partitions.values()) for n in names):
            break
        if time.monotonic() > deadline:
            sys.exit(f"topics {names} have no leaders after 30 s")
        time.sleep(0.2)
else:
    for f in admin.delete_topics(names, operation_timeout=30, request_timeout=30).values():
        try:
            f.result(timeout=60)
        except Exception:  # already gone
            pass
PY
}

# db_create NAME: a fresh KM-S database with the bench's provider and SLA.
db_create() {
	local dsn=$base_dsn/$1
	bounded 60 psql -q "$admin_dsn" -c "CREATE DATABASE $1" >/dev/null
	bounded 60 build/kms migrate --dsn "$dsn" >/dev/null
	bounded 60 build/kmsctl --dsn "$dsn" provider add bench-vsp >/dev/null
	bounded 60 build/kmsctl --dsn "$dsn" sla add --provider bench-vsp --services v2x.a,v2x.b \
		--key-formats JWK,RAW --max-val-servers 1000000 >/dev/null
}

db_drop() {
	bounded 60 psql -q "$admin_dsn" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null ||
		say "could not drop database $1"
}

free_port() {
	"$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# stop_pid PID SECONDS: SIGTERM, then SIGKILL if it is still there.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# isolated FN ARGS...: run one case in a subshell with errexit in force (it
# is not inside `if` or `||`), so that any failing step ends the case, whose
# EXIT trap cleans up; the other cases still run.
isolated() {
	local rc=0
	echo "$2" >>"$work/cases"
	set +e
	(
		set -e
		trap 'exit 130' INT
		trap 'exit 143' TERM
		"$@"
	)
	rc=$?
	set -e
	if [ "$rc" != 0 ]; then
		meta "$2" status FAILED
		failed=1
		say "$2: FAILED (exit $rc)"
	fi
}

selected() { [[ $wanted == *" $1 "* ]]; }

# ---------------------------------------------------------------- pg limit

# The pgbench script: the KM-S's write statements, each array parameter
# replaced by an expression that builds the batch's array with
# generate_series. The values below are the only thing the bench adds; a
# statement whose parameters change without them fails the bench here.
pg_script() {
	"$py" - "$pg_batch" services/kms/sql/w*.sql <<'PY'
import os, re, sys

batch, files = int(sys.argv[1]), sys.argv[2:]
# In an expression: q is the request (1..batch) of the row, :b the
# transaction's number from a sequence, so every key is unique.
ident = "('bench-' || :client_id || '-' || :b || '-' || q)"
rid = "md5(:client_id || '-' || :b || '-' || q)::uuid::text"
ms = "(extract(epoch FROM now()) * 1000)::bigint"
offset = f"(:b * {batch} + q)"
topic = "'seal.km.provisioning.requests'"
svc = "CASE g % 2 WHEN 1 THEN 'v2x.a' ELSE 'v2x.b' END"
fmt = "CASE g % 2 WHEN 1 THEN 'JWK' ELSE 'RAW' END"
# statement: (rows per request, or 0 for one row per batch, {$N: (type, value)})
values = {
    "w1_audit": (1, {
        1: ("text[]", topic), 2: ("integer[]", "q % 6"), 3: ("bigint[]", offset),
        4: ("text[]", rid), 5: ("text[]", ident), 6: ("text[]", "'DECIDED'"),
        7: ("boolean[]", "true"), 8: ("text[]", "'SUCCESS'"), 9: ("text[]", "NULL"),
        10: ("text[]", "NULL"), 11: ("text[]", "'kms-bench'"), 12: ("bigint[]", ms),
        13: ("text[]", "NULL")}),
    "w2_decisions": (1, {
        1: ("text[]", rid), 2: ("text[]", ident),
        3: ("bytea[]", f"sha256(convert_to({rid}, 'UTF8'))"),
        4: ("text[]", "'SUCCESS'"), 5: ("text[]", "NULL"), 6: ("text[]", "NULL"),
        7: ("text[]", "'kms-bench'"), 8: ("bigint[]", ms), 9: ("text[]", topic),
        10: ("integer[]", "q % 6"), 11: ("bigint[]", offset)}),
    "w3_val_servers": (1, {
        1: ("text[]", ident), 2: ("text[]", "'bench-vsp'"),
        3: ("text[]", f"'https://' || {ident} || '.val.example/kpp'"), 4: ("bigint[]", ms),
        5: ("text[]", rid)}),
    "w4_key_formats": (2, {
        1: ("text[]", ident), 2: ("text[]", svc), 3: ("integer[]", "1"), 4: ("text[]", fmt),
        5: ("text[]", "NULL"), 6: ("text[]", "'{\"seq\": \"0\"}'"), 7: ("text[]", rid),
        8: ("bigint[]", ms)}),
    "w5_provider_counts": (0, {1: ("text[]", "'bench-vsp'"), 2: ("integer[]", str(batch))}),
}

out = ["SELECT nextval('bench_batch') AS b \\gset", "BEGIN;"]
for path in files:
    name = os.path.basename(path)[:-4]
    if name not in values:
        sys.exit(f"bench: {path} is new: give its parameters values in scripts/bench.sh")
    per, params = values[name]
    sql = "\n".join(l for l in open(path).read().splitlines() if not l.lstrip().startswith("--"))
    found = {int(n): t for n, t in re.findall(r"\$(\d+)::([a-z]+\[\])", sql)}
    wanted = {n: t for n, (t, _) in params.items()}
    if len(found) != len(re.findall(r"\$\d+", sql)) or found != wanted:
        sys.exit(f"bench: the parameters of {path} ({found}) are not those the bench fills; "
                 "update its values in scripts/bench.sh")
    rows = batch * per if per else 1
    def array(m):
        n = int(m.group(1))
        t, v = params[n]
        return (f"(SELECT array_agg(({v})::{t[:-2]} ORDER BY g) FROM (SELECT g, "
                f"(g - 1) / {max(per, 1)} + 1 AS q FROM generate_series(1, {rows}) g) s)")
    out.append(re.sub(r"\$(\d+)", array, sql.strip().rstrip(";")) + ";")
out.append("COMMIT;")
print("\n".join(out))
PY
}

run_pg_limit() { # NAME
	local name=$1 db="kms_bench_${tag}_pg" out tps txns stored
	meta "$name" kind pg
	meta "$name" load "${pg_seconds}s, $pg_batch/txn"
	say "$name: pgbench, 1 connection, ${pg_seconds}s, $pg_batch requests per transaction"
	pg_script >"$work/pg.sql"
	trap 'db_drop '"$db" EXIT
	db_create "$db"
	# Where each transaction takes its number, so that every key is unique.
	bounded 60 psql -q "$base_dsn/$db" -c "CREATE SEQUENCE bench_batch" >/dev/null
	out=$(bounded $((pg_seconds + 120)) "$pg_bin/pgbench" -n -M simple -c 1 -j 1 \
		-T "$pg_seconds" -f "$work/pg.sql" "$base_dsn/$db" 2>"$work/pgbench.err") || {
		tail -n 5 "$work/pgbench.err" >&2
		return 1
	}
	echo "$out" >"$work/pgbench.out"
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
	txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	[ -n "$tps" ] && [ -n "$txns" ] || {
		echo "$out" >&2
		return 1
	}
	# The rows are there: the figure is of work done, not of errors.
	stored=$(bounded 60 psql -qAt "$base_dsn/$db" -c \
		"SELECT (SELECT count(*) FROM decisions) || ' ' || (SELECT count(*) FROM key_formats)")
	[ "$stored" = "$((txns * pg_batch)) $((txns * pg_batch * 2))" ] || {
		say "$name: $txns transactions stored $stored decisions and key formats"
		return 1
	}
	meta "$name" rps "$(awk -v t="$tps" -v b="$pg_batch" 'BEGIN { printf "%.1f", t * b }')"
	meta "$name" requests $((txns * pg_batch))
	meta "$name" status ok
}

# ---------------------------------------------------------------- KM-S cases

# kms_start KMS_FLAGS...: the KM-S of the current case, in the background.
kms_start() {
	build/kms --bootstrap "$KMS_BOOTSTRAP" --dsn "$base_dsn/$db" \
		--issuers-file "$work/issuers.json" --requests-topic "$req" --results-topic "$rep" \
		--group-id "bench-$tag-$name" --health-port "$port" --kms-id "kms-bench-$name" \
		--log-level warn ${BENCH_KMS_FLAGS:-} "$@" 2>"$work/$name.kms.log" &
	kms_pid=$!
}

# scraper PORT RATE OUT: GET /metrics RATE times a second on one kept-alive
# connection until killed; each second's count of good scrapes goes to OUT.
scraper() {
	exec "$py" - "$@" <<'PY'
import http.client, signal, sys, time
port, rate, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
done = bad = 0
def stop(*_):
    with open(out, "w") as f:
        f.write(f"scrapes={done} failed={bad}\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
conn = None
next_at = time.monotonic()
while True:
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            done += 1
        else:
            bad += 1
    except (OSError, http.client.HTTPException):
        bad += 1 if done else 0  # before the first: the KM-S is starting
        conn = None
        time.sleep(0.1)  # not up yet, or going away
    next_at += 1 / rate
    time.sleep(max(0.0, next_at - time.monotonic()))
PY
}

kms_case_cleanup() {
	[ -z "$scraper_pid" ] || stop_pid "$scraper_pid" 5
	[ -z "$fleet_pid" ] || stop_pid "$fleet_pid" 5
	[ -z "$kms_pid" ] || stop_pid "$kms_pid" 45
	db_drop "$db"
	kafka_admin delete "$req" "$rep" || say "$name: could not delete its topics"
}

# run_kms_case NAME MODE SERVERS REQUESTS [KMS_FLAGS...]
#   MODE backlog: fleet produces every request, the KM-S starts once the
#                 broker holds them all; the figure is the drain rate
#   MODE backlog+scrape: the same while scraper() GETs /metrics
#                 BENCH_SCRAPE_RATE times a second
#   MODE rate=R:  the KM-S starts first; fleet sends R requests per second;
#                 the figures are the rate and the latency percentiles
# KMS_FLAGS are added to the KM-S's command line (e.g. --batch-max 1);
# FLEET_FLAGS in the environment, split at spaces, to valctl fleet's.
#
# The case runs in a subshell of its own (isolated), so its variables are
# globals of that subshell: kms_case_cleanup, its EXIT trap, runs after
# run_kms_case has returned and still sees them.
run_kms_case() {
	name=$1 mode=$2 servers=$3 requests=$4
	shift 4
	db="kms_bench_${tag}_${name//-/_}" req="bench.$tag.$name.requests"
	rep="bench.$tag.$name.results" kms_pid= fleet_pid= port= scraper_pid=
	local rate= i a prev= rc=0 hwm fleet_args load_args batch_max=500 scrape=

	case $mode in
	backlog) meta "$name" kind drain ;;
	backlog+scrape)
		meta "$name" kind drain
		scrape=$scrape_rate
		mode=backlog
		;;
	rate=*)
		rate=${mode#rate=}
		meta "$name" kind live
		;;
	*)
		say "$name: unknown mode '$mode'"
		return 2
		;;
	esac
	for a in "$@"; do
		[ "$prev" = --batch-max ] && batch_max=$a
		prev=$a
	done
	meta "$name" batch_max "$batch_max"
	if [ -n "$rate" ]; then
		meta "$name" load "${servers}x$requests @$rate/s"
	elif [ -n "$scrape" ]; then
		meta "$name" load "${servers}x$requests backlog, $scrape scrapes/s"
	else
		meta "$name" load "${servers}x$requests backlog"
	fi
	say "$name: $servers servers x $requests requests, $mode${*:+, kms $*}"
	trap kms_case_cleanup EXIT
	db_create "$db"
	kafka_admin create "$req" "$rep"
	port=$(free_port)
	fleet_args=(--bootstrap "$KMS_BOOTSTRAP" --requests-topic "$req" --reply-topic "$rep"
		--key "$work/issuer.pem" --iss https://auth.bench --kid b1 --vsp-id bench-vsp
		--services v2x.a,v2x.b --formats JWK,RAW ${FLEET_FLAGS:-})
	load_args=(--servers "$servers" --requests "$requests" --prefix "bench-$name-"
		--timeout "$case_timeout" --json)
	if [ "$mode" = backlog ]; then
		# timeout itself, not a function running it: its pid is the one
		# that passes a SIGTERM on to fleet.
		timeout -k 5 $((case_timeout * 2 + 120)) build/valctl fleet "${fleet_args[@]}" \
			"${load_args[@]}" --acked-file "$work/$name.acked" \
			>"$work/$name.json" 2>"$work/$name.fleet.log" &
		fleet_pid=$!
		while [ ! -f "$work/$name.acked" ] && kill -0 "$fleet_pid" 2>/dev/null; do
			sleep 0.1
		done
		[ -f "$work/$name.acked" ] || {
			cat "$work/$name.fleet.log" >&2
			return 1
		}
		say "$name: backlog of $(cat "$work/$name.acked") in the broker, starting the KM-S"
		kms_start "$@"
		if [ -n "$scrape" ]; then
			scraper "$port" "$scrape" "$work/$name.scrapes" &
			scraper_pid=$!
		fi
		wait "$fleet_pid" || rc=$?
		fleet_pid=
		if [ -n "$scraper_pid" ]; then
			stop_pid "$scraper_pid" 5
			scraper_pid=
			say "$name: $(cat "$work/$name.scrapes" 2>/dev/null || echo 'no scrape count')"
			meta "$name" scrapes "$(sed -n 's/^scrapes=\([0-9]*\) .*/\1/p' \
				"$work/$name.scrapes" 2>/dev/null)"
			grep -q ' failed=0$' "$work/$name.scrapes" || {
				say "$name: scrapes failed while the KM-S worked"
				return 1
			}
		fi
	else
		kms_start "$@"
		for ((i = 0; i < 600; i++)); do
			curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
			kill -0 "$kms_pid" 2>/dev/null || break
			sleep 0.1
		done
		curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 || {
			say "$name: the KM-S is not ready after 60 s"
			tail -n 20 "$work/$name.kms.log" >&2
			return 1
		}
		# Running and idle, not just started: the first requests after a
		# start wait for the consumer's first fetches (about half a second),
		# which is not the latency of a KM-S in service.
		bounded 180 build/valctl fleet "${fleet_args[@]}" --servers $((partitions * 4)) \
			--requests 2 --prefix "bench-$name-warm-" --timeout 60 \
			>"$work/$name.warm.log" 2>&1 || {
			cat "$work/$name.warm.log" >&2
			return 1
		}
		bounded $((case_timeout * 2 + 120)) build/valctl fleet "${fleet_args[@]}" \
			"${load_args[@]}" --rate "$rate" >"$work/$name.json" 2>"$work/$name.fleet.log" || rc=$?
	fi
	# The peak while the KM-S worked, before the shutdown can add to it.
	kill -0 "$kms_pid" 2>/dev/null || {
		say "$name: the KM-S died"
		tail -n 20 "$work/$name.kms.log" >&2
		return 1
	}
	hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$kms_pid/status")
	meta "$name" rss_kib "$hwm"
	# user + system CPU of the KM-S so far (fields 14 and 15, in clock ticks):
	# far less noisy than a rate on a shared machine
	meta "$name" cpu_s "$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' \
		"/proc/$kms_pid/stat")"
	stop_pid "$kms_pid" 45
	kms_pid=
	if [ "$rc" != 0 ]; then
		cat "$work/$name.fleet.log" >&2
		return "$rc"
	fi
	meta "$name" status ok
}

# ---------------------------------------------------------------- report

# ratio A B LABEL [MIN]: A's requests per second over B's, checked against MIN.
ratio() { printf '%s|%s|%s|%s\n' "$1" "$2" "$3" "${4:-}" >>"$work/ratios"; }
# scrape_cost ON OFF: the KM-S's CPU per scrape, from the median CPU of the
# cases ON (comma-separated, scraped) less that of OFF, over their scrapes.
scrape_cost() { printf '%s|%s\n' "$1" "$2" >>"$work/scrape_costs"; }
# target CASE FIGURE MAX TEXT: FIGURE (p99_ms, rss_mib) of CASE at most MAX.
target() { printf '%s|%s|%s|%s\n' "$1" "$2" "$3" "$4" >>"$work/targets"; }
# latency_cost A B LABEL: what A adds to B's latency percentiles.
latency_cost() { printf '%s|%s|%s\n' "$1" "$2" "$3" >>"$work/latcost"; }

report() {
	"$py" - "$work" <<'PY'
import json, os, sys

work = sys.argv[1]
def lines(name):
    p = os.path.join(work, name)
    return [l.split("|") for l in open(p).read().splitlines()] if os.path.exists(p) else []

rows, notes = {}, []
order = [c for c, in lines("cases")]
for c in order:
    m = dict(l.split("=", 1) for l in open(os.path.join(work, c + ".meta")).read().splitlines())
    r = {"load": m.get("load", ""), "kind": m.get("kind", ""), "ok": m.get("status") == "ok"}
    try:
        s = json.load(open(os.path.join(work, c + ".json")))
    except (OSError, ValueError):
        s = None
    if r["kind"] == "pg":
        if "rps" in m:
            r["results"], r["rps"] = int(m["requests"]), float(m["rps"])
    elif s is not None:
        r["sent"], r["results"], r["missing"] = s["sent"], s["results"], s["missing"]
        r["rps"] = s["drain_requests_per_second" if r["kind"] == "drain" else
                     "requests_per_second"]
        if r["kind"] == "live":
            lat = s["latency_ms"]
            r["p50_ms"], r["p95_ms"], r["p99_ms"] = lat["p50"], lat["p95"], lat["p99"]
    if m.get("rss_kib"):
        r["rss_mib"] = int(m["rss_kib"]) / 1024
    if m.get("cpu_s"):
        r["cpu_s"] = float(m["cpu_s"])
    if m.get("scrapes"):
        r["scrapes"] = int(m["scrapes"])
    r["target"] = "" if r["ok"] else "FAILED"
    # Results leave a batch together: a backlog of few batches drains in
    # a handful of steps, and the first-to-last rate means little.
    if r["ok"] and r["kind"] == "drain" and r["results"] < 10 * int(m.get("batch_max", 500)):
        notes.append(f"{c}: fewer than 10 batches of Results; its req/s is not a drain rate")
    rows[c] = r

for c, fig, mx, text in lines("targets"):
    r = rows.get(c)
    if r is None or not r["ok"]:
        continue
    v = r.get(fig)
    r["target"] = f"{text}: " + ("-" if v is None else "ok" if v <= float(mx) else "MISSED")

def median_rps(cases):
    """The median req/s of comma-separated cases; None if one failed."""
    got = [rows[c].get("rps") if rows[c]["ok"] else None for c in cases]
    if not got or None in got:
        return None
    got.sort()
    n = len(got)
    return got[n // 2] if n % 2 else (got[n // 2 - 1] + got[n // 2]) / 2

ratios = []
for a, b, label, mn in lines("ratios"):
    ca, cb = a.split(","), b.split(",")
    if any(c not in rows for c in ca + cb):
        continue  # not run (BENCH_CASES)
    ra, rb = median_rps(ca), median_rps(cb)
    if not (ra and rb):
        ratios.append(f"{label}: -")
        continue
    x = ra / rb
    if mn:
        goal, ok = f">= {float(mn):.0%}", "ok" if x >= float(mn) else "MISSED"
        for c in ca:
            rows[c]["target"] = rows[c]["target"] or f"{label} {goal}: {ok}"
        ratios.append(f"{label}: {ra:.0f} / {rb:.0f} = {x:.0%}  (target {goal}: {ok})")
    else:
        ratios.append(f"{label}: {ra:.0f} / {rb:.0f} = {x:.1f}x ({x - 1:+.0%})")

for a, b, label in lines("latcost"):
    if a not in rows or b not in rows:
        continue
    if not (rows[a]["ok"] and rows[b]["ok"] and rows[a].get("p99_ms") is not None
            and rows[b].get("p99_ms") is not None):
        ratios.append(f"{label}: -")
        continue
    ratios.append(f"{label}: " + ", ".join(
        f"{p} {rows[a][k]:.1f} vs {rows[b][k]:.1f} ms ({rows[a][k] - rows[b][k]:+.1f})"
        for p, k in (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"))))

def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

for on, off in lines("scrape_costs"):
    con, coff = on.split(","), off.split(",")
    if any(c not in rows for c in con + coff):
        continue
    if not all(rows[c]["ok"] and rows[c].get("cpu_s") is not None for c in con + coff) or \
            not all(rows[c].get("scrapes") for c in con):
        ratios.append("KM-S CPU per scrape: -")
        continue
    extra = median([rows[c]["cpu_s"] for c in con]) - median([rows[c]["cpu_s"] for c in coff])
    n = median([rows[c]["scrapes"] for c in con])
    ratios.append(f"KM-S CPU per scrape: ({median([rows[c]['cpu_s'] for c in con]):.2f} - "
                  f"{median([rows[c]['cpu_s'] for c in coff]):.2f} s) / {n:.0f} scrapes = "
                  f"{1e6 * extra / n:.0f} us (medians; the noise of a shared machine is "
                  f"in it)")

def f(v, fmt):
    return "-" if v is None else format(v, fmt)

head = ("case", "load", "sent", "results", "missing", "req/s", "p50 ms", "p95 ms", "p99 ms",
        "RSS MiB", "CPU s", "target")
table = [head]
for c in order:
    r = rows[c]
    table.append((c, r["load"], f(r.get("sent"), "d"), f(r.get("results"), "d"),
                  f(r.get("missing"), "d"), f(r.get("rps"), ".0f"), f(r.get("p50_ms"), ".1f"),
                  f(r.get("p95_ms"), ".1f"), f(r.get("p99_ms"), ".1f"),
                  f(r.get("rss_mib"), ".1f"), f(r.get("cpu_s"), ".2f"), r["target"]))
widths = [max(len(row[i]) for row in table) for i in range(len(head))]
for row in table:
    cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
    cells += [row[i].rjust(widths[i]) for i in range(2, len(head) - 1)]
    print("  ".join(cells + [row[-1]]).rstrip())

if ratios or notes:
    print()
    print("\n".join(ratios + notes))
PY
}

# ---------------------------------------------------------------- the run

build/valctl keygen --out-private "$work/issuer.pem" --out-public "$work/issuer.pub.pem"
printf '[{"iss": "https://auth.bench", "kid": "b1", "public_key_file": "issuer.pub.pem"}]\n' \
	>"$work/issuers.json"

if selected pg-limit; then
	isolated run_pg_limit pg-limit
fi
if selected drain; then
	isolated run_kms_case drain backlog "$drain_servers" "$drain_requests"
fi
if selected drain-no-eos; then
	isolated run_kms_case drain-no-eos backlog "$drain_servers" "$drain_requests" \
		--exactly-once false
fi
if selected latency; then
	isolated run_kms_case latency "rate=$latency_rate" "$latency_servers" "$latency_requests"
fi
if selected latency-no-eos; then
	isolated run_kms_case latency-no-eos "rate=$latency_rate" "$latency_servers" \
		"$latency_requests" --exactly-once false
fi
if selected drain-confluent; then
	[ -n "${KMS_REGISTRY_URL:-}" ] || {
		say "drain-confluent: the stack has no registry (KMS_REGISTRY_PORT empty)"
		exit 1
	}
	FLEET_FLAGS="--framing confluent --registry $KMS_REGISTRY_URL" \
		isolated run_kms_case drain-confluent backlog "$drain_servers" "$drain_requests" \
		--registry-url "$KMS_REGISTRY_URL"
fi
if selected batch-max-1; then
	isolated run_kms_case batch-max-1 backlog "$batch1_servers" "$batch1_requests" \
		--batch-max 1
fi
if selected rss; then
	isolated run_kms_case rss backlog "$rss_servers" "$rss_requests"
fi
scrape_off= scrape_on=
if selected scrape; then
	for ((round = 1; round <= scrape_rounds; round++)); do
		isolated run_kms_case "scrape-off-$round" backlog "$scrape_servers" "$scrape_requests"
		isolated run_kms_case "scrape-on-$round" backlog+scrape "$scrape_servers" \
			"$scrape_requests"
		scrape_off+=${scrape_off:+,}scrape-off-$round
		scrape_on+=${scrape_on:+,}scrape-on-$round
	done
fi

ratio drain pg-limit "drain / pg limit" 0.70
ratio drain batch-max-1 "batched / unbatched"
ratio drain drain-no-eos "transactions / none (drain)"
latency_cost latency latency-no-eos "transactions vs none (latency)"
if [ -n "$scrape_on" ]; then
	ratio "$scrape_on" "$scrape_off" "throughput scraped / not scraped, medians" 0.98
	scrape_cost "$scrape_on" "$scrape_off"
fi
ratio drain-confluent drain "confluent / single-object" 0.80
target latency p99_ms 20 "p99 <= 20 ms"
target latency-no-eos p99_ms 20 "p99 <= 20 ms"
target rss rss_mib 32 "RSS <= 32 MiB"

report
exit "$failed"
