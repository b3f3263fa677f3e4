# The KM-S and its command-line tools (kms, kmsctl, valctl) on Debian 12.
#
#   docker build -t seal-kms .
#   docker run --rm -e KMS_BOOTSTRAP=... -e KMS_DSN=... -p 8080:8080 seal-kms
#
# docker-compose.yml builds this image and runs it next to Kafka, PostgreSQL and
# the schema registry.

# ---------------------------------------------------------------- build
FROM debian:bookworm AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config ca-certificates \
      librdkafka-dev libavro-dev libssl-dev libpq-dev libjansson-dev \
      libmicrohttpd-dev libcurl4-openssl-dev uuid-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# Start from a clean tree whatever the build context held.
RUN rm -rf build .stack \
 && make -j"$(nproc)" \
 && test -x build/kms && test -x build/kmsctl && test -x build/valctl

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libavro23 libssl3 libpq5 libjansson4 libmicrohttpd12 libcurl4 \
      libuuid1 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin kms

COPY --from=build /src/build/kms /src/build/kmsctl /src/build/valctl /usr/local/bin/

USER kms
# In a container the health port (/livez, /readyz, /metrics) listens on every
# interface, so that probes and Prometheus reach it from outside.
ENV KMS_HEALTH_PORT=8080 KMS_HEALTH_ADDRESS=0.0.0.0
EXPOSE 8080

# Asks where the KM-S listens: a wildcard address on the loopback, an IPv6
# one in brackets.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
  CMD a=${KMS_HEALTH_ADDRESS:-127.0.0.1}; \
      case $a in 0.0.0.0) a=127.0.0.1 ;; ::) a='[::1]' ;; *:*) a="[$a]" ;; esac; \
      curl -fsS "http://$a:${KMS_HEALTH_PORT:-8080}/readyz" >/dev/null || exit 1

CMD ["kms"]
