#!/usr/bin/env bash
# make bench: throughput and latency of the provisioning pipeline, measured
# side by side in one run on the local stack, so that the machine's noise
# falls on both alike. Each case gets a fresh database and consumer group;
# valctl fleet drives the load (every VAL server with its own token, requests
# sent without waiting, every Result collected) and reports requests per
# second and latency percentiles from send to Result.
#
#   batched    the KM-S as shipped (up to 500 requests per transaction)
#   unbatched  the same with --batch-max 1 (one transaction per request)
#
# BENCH_SERVERS and BENCH_REQUESTS size the batched case (default 1000 x 10);
# the unbatched case runs a fifth of the servers, to keep the run short.
set -euo pipefail
cd "$(dirname "$0")/.."
servers=${BENCH_SERVERS:-1000}
requests=${BENCH_REQUESTS:-10}

scripts/deps.sh >/dev/null
make -s -j"$(nproc)"
KMS_SKIP_DEPS=1 scripts/stack up >/dev/null
eval "$(scripts/stack env)"
work=$(mktemp -d)
kms_pid=
cleanup() {
	[ -n "$kms_pid" ] && kill -TERM "$kms_pid" 2>/dev/null && wait "$kms_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

build/valctl keygen --out-private "$work/issuer.pem" --out-public "$work/issuer.pub.pem"
printf '[{"iss": "https://auth.bench", "kid": "b1", "public_key_file": "issuer.pub.pem"}]\n' \
	>"$work/issuers.json"
admin_dsn=$KMS_DSN
base=${KMS_DSN%/*}

run_case() { # name batch_max servers
	local name=$1 batch=$2 n=$3
	local db="kms_bench_${name}_$$" port=$((18100 + RANDOM % 800))
	psql -q "$admin_dsn" -c "CREATE DATABASE $db" >/dev/null
	local dsn="$base/$db"
	build/kms migrate --dsn "$dsn" >/dev/null
	build/kmsctl --dsn "$dsn" provider add bench-vsp >/dev/null
	build/kmsctl --dsn "$dsn" sla add --provider bench-vsp --services v2x.a,v2x.b \
		--key-formats JWK,RAW --max-val-servers 1000000 >/dev/null
	build/kms --bootstrap "$KMS_BOOTSTRAP" --dsn "$dsn" --issuers-file "$work/issuers.json" \
		--group-id "bench-$name-$$" --batch-max "$batch" --health-port "$port" \
		--kms-id "kms-bench-$name" --log-level warn -X auto.offset.reset=latest \
		2>"$work/$name.log" &
	kms_pid=$!
	for _ in $(seq 1 300); do
		curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
		sleep 0.2
	done
	build/valctl fleet --servers "$n" --requests "$requests" --key "$work/issuer.pem" \
		--iss https://auth.bench --kid b1 --vsp-id bench-vsp --services v2x.a,v2x.b \
		--formats JWK,RAW --prefix "bench-$name-$$-" --timeout 120 --json >"$work/$name.json"
	kill -TERM "$kms_pid"
	wait "$kms_pid" || true
	kms_pid=
	psql -q "$admin_dsn" -c "DROP DATABASE $db" >/dev/null
}

echo "running: batched ($servers servers x $requests requests), then unbatched" \
	"($((servers / 5)) x $requests)" >&2
run_case batched 500 "$servers"
run_case unbatched 1 $((servers / 5))

python3 - "$work/batched.json" "$work/unbatched.json" <<'PY'
import json, sys
rows = [(name, json.load(open(path))) for name, path in zip(("batched", "unbatched"), sys.argv[1:])]
def get(d, *keys):
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        else:
            return None
    return d
print(f"{'case':<10} {'sent':>7} {'results':>7} {'missing':>7} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
for name, d in rows:
    lat = d.get("latency_ms", {})
    print(f"{name:<10} {d.get('sent', 0):>7} {d.get('results', 0):>7} {d.get('missing', 0):>7} "
          f"{d.get('requests_per_second', 0):>9.0f} {lat.get('p50', 0):>8.1f} {lat.get('p95', 0):>8.1f} {lat.get('p99', 0):>8.1f}")
a, b = rows[0][1].get("requests_per_second", 0), rows[1][1].get("requests_per_second", 0)
if a and b:
    print(f"batched / unbatched throughput: {a / b:.1f}x")
PY
