#!/usr/bin/env bash
# make run: install what is missing, build, bring the stack up, start the
# KM-S on it and show the product working: a demo provider with an SLA, a few
# VAL servers provisioned (some succeed, one fails on its SLA, one on its
# token), their Results, and what the admin command shows stored.
# make stop (run.sh stop): stop the KM-S and the stack.
#
# KMS_HEALTH_PORT sets the demo KM-S's health port (default 18090: not the
# registry's default 18080, nor 18081, the port the stack gives the
# registry's management interface). The demo shows only its own provider's
# VAL servers, not the thousands a `make test` leaves in the database.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${KMS_STACK_DIR:-$(pwd)/.stack}
demo="$state/demo"
health_port=${KMS_HEALTH_PORT:-18090}

stop_kms() {
	if [ -f "$demo/kms.pid" ]; then
		pid=$(cat "$demo/kms.pid")
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid"
			for _ in $(seq 1 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null || true
		fi
		rm -f "$demo/kms.pid"
	fi
}

if [ "${1:-}" = stop ]; then
	stop_kms
	scripts/stack down
	exit 0
fi

scripts/deps.sh
make -s -j"$(nproc)"
KMS_SKIP_DEPS=1 scripts/stack up >/dev/null
eval "$(scripts/stack env)"
export KMS_BOOTSTRAP KMS_DSN
case ${KMS_REGISTRY_URL:-} in
*":$health_port/"*)
	echo "run.sh: the health port $health_port is the registry's; set KMS_HEALTH_PORT to another" >&2
	exit 2
	;;
esac
# With the stack's schema registry, the KM-S also reads Confluent-framed
# requests, and migrate registers the schemas there.
registry=()
[ -z "${KMS_REGISTRY_URL:-}" ] || registry=(--registry-url "$KMS_REGISTRY_URL")
mkdir -p "$demo"

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. The SEAL service provider's side: schema, a VAL service provider, its SLA"
build/kms migrate --dsn "$KMS_DSN" "${registry[@]}"
if [ ! -f "$demo/issuer.pem" ]; then
	build/valctl keygen --out-private "$demo/issuer.pem" --out-public "$demo/issuer.pub.pem"
fi
cat >"$demo/issuers.json" <<JSON
[{"iss": "https://auth.demo.example", "kid": "demo-1", "public_key_file": "issuer.pub.pem"}]
JSON
build/kmsctl --dsn "$KMS_DSN" provider add demo-vsp --name "Demo V2X operator" 2>/dev/null || true
if ! build/kmsctl --dsn "$KMS_DSN" --json sla list --provider demo-vsp | grep -q v2x.platooning; then
	build/kmsctl --dsn "$KMS_DSN" sla add --provider demo-vsp \
		--services v2x.platooning,v2x.see-through --key-formats JWK,TRANSPARENT_SYMMETRIC_KEY \
		--max-val-servers 100
fi
build/kmsctl --dsn "$KMS_DSN" sla list --provider demo-vsp

say "2. The KM-S starts (log: $demo/kms.log, health: http://127.0.0.1:$health_port/readyz)"
stop_kms
nohup build/kms --bootstrap "$KMS_BOOTSTRAP" --dsn "$KMS_DSN" --issuers-file "$demo/issuers.json" \
	--health-port "$health_port" --kms-id kms-demo "${registry[@]}" >"$demo/kms.log" 2>&1 &
echo $! >"$demo/kms.pid"
for _ in $(seq 1 300); do
	curl -fs "http://127.0.0.1:$health_port/readyz" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -s "http://127.0.0.1:$health_port/readyz"

token() { # client_id [extra flags]
	local id=$1
	shift
	build/valctl token --key "$demo/issuer.pem" --iss https://auth.demo.example --kid demo-1 \
		--client-id "$id" --vsp-id demo-vsp "$@"
}
provision() { # identity token services...
	local id=$1 tok=$2
	shift 2
	local args=()
	for s in "$@"; do args+=(--service "$s"); done
	printf '%-24s ' "$id"
	build/valctl provision --requester "$id" --endpoint "https://$id.example/kms-callback" \
		--token "$tok" "${args[@]}" --timeout 30 || true
}

say "3. VAL servers provision their key format per VAL service"
provision val-truck-001 "$(token val-truck-001)" v2x.platooning:JWK
provision val-truck-002 "$(token val-truck-002)" v2x.platooning:JWK v2x.see-through:TRANSPARENT_SYMMETRIC_KEY
provision val-truck-003 "$(token val-truck-003)" v2x.see-through:JWK
echo "(a service the SLA does not cover:)"
provision val-drone-001 "$(token val-drone-001)" drones.flight-plan:JWK
echo "(a token minted for another VAL server:)"
provision val-truck-004 "$(token val-truck-999)" v2x.platooning:JWK

say "4. What the KM-S stored for demo-vsp"
build/kmsctl --dsn "$KMS_DSN" valserver list --provider demo-vsp
say "   and the audit trail of val-drone-001"
build/kmsctl --dsn "$KMS_DSN" audit val-drone-001

say "The KM-S keeps running. 'make stop' stops it and the stack."
