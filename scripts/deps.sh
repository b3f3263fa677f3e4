#!/usr/bin/env bash
# Install what building and testing the KM-S needs, and nothing twice.
#
#   1. Debian packages: asks dpkg which of the list are missing and installs
#      only those (one apt-get update first, only when something is missing).
#   2. A Python virtualenv for the tests, (re)installed from requirements.txt
#      only when that file's hash differs from the stamp in the venv.
#   3. The Kafka broker jars, copied by Maven from scripts/kafka/pom.xml into
#      the cache, only when the cached copy lacks a stamp matching the pom.
#   4. promtool (the tests check a real /metrics scrape with it): Debian's
#      prometheus package is downloaded into the cache and only its promtool
#      extracted; the Prometheus server is not installed. Only when missing.
#   5. Apicurio Registry (the schema registry of the stack), copied by Maven
#      from scripts/registry/pom.xml and unpacked into the cache, likewise.
#
# Everything already present costs a few dpkg/sha256sum calls, so make targets
# may call this freely; a lock serialises concurrent runs (make -j).
#
# Environment:
#   KMS_CACHE  cache folder (default: $HOME/.cache/seal-kms)
#   KMS_VENV   virtualenv folder (default: $HOME/.cache/seal-kms/venv)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
home=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
cache=${KMS_CACHE:-$home/.cache/seal-kms}
venv=${KMS_VENV:-$home/.cache/seal-kms/venv}
kafka_version=4.1.2
kafka_libs=$cache/kafka-$kafka_version/libs
registry_version=3.0.9
registry_home=$cache/apicurio-registry-$registry_version

packages=(
	build-essential pkg-config
	librdkafka-dev libavro-dev libssl-dev libpq-dev libjansson-dev
	libmicrohttpd-dev libcurl4-openssl-dev uuid-dev
	postgresql-15 postgresql-client-15
	kcat openssl curl
	procps iproute2 util-linux
	openjdk-17-jre-headless maven
	clang clang-format libclang-rt-14-dev valgrind
	docker-compose
	python3-venv python3-dev
)

say() { printf 'deps: %s\n' "$*"; }
die() {
	printf 'deps: error: %s\n' "$*" >&2
	exit 1
}

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run: $*"
	fi
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$cache"
# One run at a time: parallel make targets would otherwise race on apt, the
# venv and the jar folder.
exec 9>"$cache/.deps.lock"
flock 9

step_packages() {
	local missing=() p status
	for p in "${packages[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
		case $status in
		ii*) ;;
		*) missing+=("$p") ;;
		esac
	done
	if [ ${#missing[@]} -eq 0 ]; then
		say "debian packages: all ${#packages[@]} present"
		return
	fi
	say "debian packages: installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

step_venv() {
	local req=$repo/requirements.txt want have=
	[ -f "$req" ] || die "missing $req"
	want=$(sha_of "$req")
	if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '' 2>/dev/null; then
		have=$(cat "$venv/.requirements.sha256" 2>/dev/null || true)
	else
		rm -rf "$venv"
		/usr/bin/python3 -m venv "$venv"
	fi
	if [ "$have" = "$want" ]; then
		say "python venv: up to date ($venv)"
		return
	fi
	say "python venv: installing requirements.txt into $venv"
	rm -f "$venv/.requirements.sha256"
	"$venv/bin/python" -m pip install -q --disable-pip-version-check \
		--only-binary=:all: -r "$req"
	printf '%s\n' "$want" >"$venv/.requirements.sha256"
}

step_kafka() {
	local pom=$repo/scripts/kafka/pom.xml want tmp
	want=$(sha_of "$pom")
	if [ "$(cat "$kafka_libs/.stamp" 2>/dev/null || true)" = "$want" ]; then
		say "kafka $kafka_version jars: present ($kafka_libs)"
		return
	fi
	say "kafka $kafka_version jars: fetching with maven into $kafka_libs"
	tmp=$kafka_libs.tmp.$$
	rm -rf "$tmp"
	if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
		-DoutputDirectory="$tmp" >"$cache/mvn.log" 2>&1; then
		rm -rf "$tmp"
		tail -n 30 "$cache/mvn.log" >&2
		die "maven failed (full log: $cache/mvn.log)"
	fi
	printf '%s\n' "$want" >"$tmp/.stamp"
	# Swap in whole so that a half-copied folder is never taken for complete.
	rm -rf "$kafka_libs"
	mv "$tmp" "$kafka_libs"
}

step_promtool() {
	local bin=$cache/bin/promtool tmp deb
	if [ -x "$bin" ]; then
		say "promtool: present ($bin)"
		return
	fi
	say "promtool: extracting it from Debian's prometheus package into $cache/bin"
	tmp=$(mktemp -d -p "$cache")
	# apt-get download writes into the current folder; _apt cannot write a
	# root-owned folder, which only costs a warning.
	if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null); then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		(cd "$tmp" && apt-get download -qq prometheus 2>/dev/null) ||
			{ rm -rf "$tmp"; die "apt-get download prometheus failed"; }
	fi
	deb=$(ls "$tmp"/prometheus_*.deb)
	mkdir -p "$tmp/root"
	dpkg-deb --fsys-tarfile "$deb" | tar -xf - -C "$tmp/root" ./usr/bin/promtool
	mkdir -p "$cache/bin"
	# Into place whole, so a half-copied file is never taken for promtool.
	mv "$tmp/root/usr/bin/promtool" "$bin.tmp.$$"
	mv "$bin.tmp.$$" "$bin"
	rm -rf "$tmp"
}

step_registry() {
	local pom=$repo/scripts/registry/pom.xml want tmp
	want=$(sha_of "$pom")
	if [ "$(cat "$registry_home/.stamp" 2>/dev/null || true)" = "$want" ]; then
		say "apicurio registry $registry_version: present ($registry_home)"
		return
	fi
	say "apicurio registry $registry_version: fetching with maven into $registry_home"
	tmp=$registry_home.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp/dist"
	if ! mvn -B -q -f "$pom" dependency:copy \
		-DoutputDirectory="$tmp/dist" >"$cache/mvn-registry.log" 2>&1; then
		rm -rf "$tmp"
		tail -n 30 "$cache/mvn-registry.log" >&2
		die "maven failed (full log: $cache/mvn-registry.log)"
	fi
	tar --no-same-owner -xzf "$tmp"/dist/apicurio-registry-app-*-all.tar.gz -C "$tmp" ||
		die "cannot unpack the registry distribution"
	rm -rf "$tmp/dist"
	# The distribution's runner jar, by one name whatever the version.
	ln -s "$(cd "$tmp" && ls apicurio-registry-app-*-runner.jar)" "$tmp/registry-runner.jar"
	printf '%s\n' "$want" >"$tmp/.stamp"
	rm -rf "$registry_home"
	mv "$tmp" "$registry_home"
}

step_packages
step_venv
step_kafka
step_promtool
step_registry
