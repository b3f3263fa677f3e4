#!/usr/bin/env bash
# Make the TLS material of the test stack in DIR (PEM throughout):
#
#   ca.pem, ca.key                 test CA that signs everything below
#   server.pem, server.key         server certificate for 127.0.0.1 / localhost
#                                  (SAN IP:127.0.0.1, DNS:localhost); key in PKCS#8
#   server-chain.pem               server.pem followed by ca.pem
#   server-keystore.pem            chain + unencrypted PKCS#8 key (Kafka's PEM key store)
#   client.pem, client.key         a client certificate from the same CA (CN kms-test-client)
#   wrong-ca.pem, wrong-ca.key     an unrelated CA, to check that verification fails
#
# Idempotent: what exists and still verifies is kept; a new CA re-issues the
# certificates it signs.
#
# Usage: scripts/certs.sh DIR
set -euo pipefail

if [ $# -ne 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"
umask 077

days=3650
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

new_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# new_ca NAME SUBJECT
new_ca() {
	new_key "$1.key"
	openssl req -x509 -new -key "$1.key" -sha256 -days "$days" -subj "$2" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign \
		-out "$1.pem"
}

# issue NAME SUBJECT EXTFILE: a leaf certificate signed by ca.pem
issue() {
	new_key "$1.key"
	openssl req -new -key "$1.key" -subj "$2" -out "$tmp/$1.csr"
	openssl x509 -req -in "$tmp/$1.csr" -CA ca.pem -CAkey ca.key \
		-CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days "$days" \
		-extfile "$3" -out "$1.pem" 2>/dev/null
}

# valid NAME: the certificate exists, has its key, and verifies against ca.pem
valid() {
	[ -s "$1.pem" ] && [ -s "$1.key" ] &&
		openssl verify -CAfile ca.pem "$1.pem" >/dev/null 2>&1
}

made=
if ! { [ -s ca.pem ] && [ -s ca.key ]; }; then
	new_ca ca "/CN=SEAL KM-S test CA"
	made="$made ca"
fi

cat >"$tmp/server.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
if ! valid server; then
	issue server "/CN=localhost" "$tmp/server.ext"
	made="$made server"
fi

cat >"$tmp/client.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
if ! valid client; then
	issue client "/CN=kms-test-client" "$tmp/client.ext"
	made="$made client"
fi

if ! { [ -s wrong-ca.pem ] && [ -s wrong-ca.key ]; }; then
	new_ca wrong-ca "/CN=Unrelated test CA"
	made="$made wrong-ca"
fi

# Derived files are cheap: always rebuild them from the parts.
cat server.pem ca.pem >server-chain.pem
cat server-chain.pem server.key >server-keystore.pem
# Certificates are public; keys stay owner-only.
chmod 644 ca.pem server.pem server-chain.pem client.pem wrong-ca.pem
chmod 600 ca.key server.key client.key wrong-ca.key server-keystore.pem

if [ -n "$made" ]; then
	echo "certs: made$made in $(pwd)"
else
	echo "certs: $(pwd) up to date"
fi
