#!/usr/bin/env bash
# Runs a command with the real servers the tests need, started once for the whole run
# on loopback, and stops them by PID afterwards, whatever happens.
#
#   scripts/with-servers.sh cargo test --workspace
#
# Exports CORO_TEST_NATS_URL (nats-server with JetStream) and CORO_NATS_SERVER (the
# binary, for tests that start their own).
# Exports CORO_TEST_KAFKA_BROKERS (tansu, a Kafka-API broker with memory storage, as
# host:port) and CORO_KAFKA_SERVER (its binary, for tests that stop and restart one).
# Exports CORO_TEST_ES_URL (noida-db, an Elasticsearch-API server, fresh data dir) and
# CORO_ES_SERVER (its binary, for tests that stop and restart one).
# Exports CORO_TEST_KINESIS_ENDPOINT (moto_server, Kinesis API, as http://host:port) and
# CORO_KINESIS_SERVER (its binary), with dummy AWS credentials and region for it, and
# CORO_KINESIS_MOCK (kinesis-mock's package dir, for the test that restarts a server).
# Exports CORO_TEST_PUBSUB_EMULATOR_HOST (the official Pub/Sub emulator, host:port) and
# CORO_PUBSUB_EMULATOR (its launcher, for tests that stop and restart one).
set -euo pipefail
cd "$(dirname "$0")/.."

nats_bin="$(scripts/install-nats.sh)"
es_bin="$(scripts/install-es.sh)" || {
  echo "with-servers: no Elasticsearch-API server: run scripts/install-es.sh (or make setup)" >&2
  exit 1
}
kafka_bin="$(scripts/install-kafka.sh)" || {
  echo "with-servers: no Kafka-API broker: run scripts/install-kafka.sh (or make setup)" >&2
  exit 1
}
kinesis_bin="$(scripts/install-kinesis.sh)" || {
  echo "with-servers: no Kinesis server: run scripts/install-kinesis.sh (or make setup)" >&2
  exit 1
}
pubsub_bin=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
if [ -n "${CORO_PUBSUB_EMULATOR:-}" ]; then pubsub_bin="$CORO_PUBSUB_EMULATOR"; fi
if [ ! -x "$pubsub_bin" ]; then
  echo "with-servers: the Pub/Sub emulator is missing ($pubsub_bin): install the Debian package google-cloud-cli-pubsub-emulator (from Google's Cloud SDK apt source; it needs Java)" >&2
  exit 1
fi
if ! command -v java >/dev/null 2>&1; then
  echo "with-servers: the Pub/Sub emulator needs Java: apt-get install default-jre-headless" >&2
  exit 1
fi
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/coro-servers.XXXXXX")"
pids=()

cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # The Pub/Sub emulator runs in a process group of its own (its launcher script
  # starts the JVM); end the whole group so no JVM is left behind.
  if [ -n "${pubsub_pgid:-}" ]; then kill -TERM -- "-$pubsub_pgid" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$run_dir"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

nats_port="$(free_port)"
mkdir -p "$run_dir/nats"
"$nats_bin" -a 127.0.0.1 -p "$nats_port" -js -sd "$run_dir/nats" -n coro-test \
  >"$run_dir/nats.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 200); do
  grep -q "Server is ready" "$run_dir/nats.log" && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "with-servers: nats-server exited at start:" >&2
    cat "$run_dir/nats.log" >&2
    exit 1
  fi
  sleep 0.05
done
grep -q "Server is ready" "$run_dir/nats.log" || { echo "with-servers: nats-server not ready after 10s" >&2; cat "$run_dir/nats.log" >&2; exit 1; }
echo "with-servers: nats-server $("$nats_bin" --version | awk '{print $2}') with JetStream on 127.0.0.1:$nats_port (pid ${pids[0]})"

# tansu (Kafka API), memory storage: nothing survives the run.
kafka_port="$(free_port)"
"$kafka_bin" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ \
  >"$run_dir/tansu.log" 2>&1 &
kafka_pid=$!
pids+=("$kafka_pid")
kafka_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null; }
for _ in $(seq 1 200); do
  kafka_ready && break
  if ! kill -0 "$kafka_pid" 2>/dev/null; then
    echo "with-servers: tansu exited at start:" >&2
    cat "$run_dir/tansu.log" >&2
    exit 1
  fi
  sleep 0.05
done
kafka_ready || { echo "with-servers: tansu not ready after 10s" >&2; cat "$run_dir/tansu.log" >&2; exit 1; }
echo "with-servers: $("$kafka_bin" --version) (Kafka API, memory storage) on 127.0.0.1:$kafka_port (pid $kafka_pid)"

export CORO_TEST_KAFKA_BROKERS="127.0.0.1:$kafka_port"
export CORO_KAFKA_SERVER="$kafka_bin"
export CORO_TEST_NATS_URL="nats://127.0.0.1:$nats_port"
export CORO_NATS_SERVER="$nats_bin"

# noida-db (Elasticsearch API), only its ES service, state in a fresh dir of this run.
es_port="$(free_port)"
mkdir -p "$run_dir/es"
"$es_bin" start --only elasticsearch --elasticsearch-port "$es_port" --host 127.0.0.1 \
  --data-dir "$run_dir/es" </dev/null >"$run_dir/es.log" 2>&1 &
es_pid=$!
pids+=("$es_pid")
# python3 rather than curl: the scripts need it anyway.
es_get() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "http://127.0.0.1:$es_port$1" 2>/dev/null; }
es_ready() { es_get /_cluster/health >/dev/null; }
for _ in $(seq 1 200); do
  es_ready && break
  if ! kill -0 "$es_pid" 2>/dev/null; then
    echo "with-servers: noida-db exited at start:" >&2
    cat "$run_dir/es.log" >&2
    exit 1
  fi
  sleep 0.05
done
es_ready || { echo "with-servers: noida-db not ready after 10s" >&2; cat "$run_dir/es.log" >&2; exit 1; }
echo "with-servers: noida-db (Elasticsearch API $(es_get / | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"]["number"])')) on 127.0.0.1:$es_port (pid $es_pid)"
export CORO_TEST_ES_URL="http://127.0.0.1:$es_port"
export CORO_ES_SERVER="$es_bin"

# moto_server (Kinesis API), in memory.
kinesis_port="$(free_port)"
"$kinesis_bin" -H 127.0.0.1 -p "$kinesis_port" >"$run_dir/moto.log" 2>&1 &
kinesis_pid=$!
pids+=("$kinesis_pid")
kinesis_ready() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "http://127.0.0.1:$kinesis_port/moto-api/" 2>/dev/null; }
for _ in $(seq 1 300); do
  kinesis_ready && break
  if ! kill -0 "$kinesis_pid" 2>/dev/null; then
    echo "with-servers: moto_server exited at start:" >&2
    cat "$run_dir/moto.log" >&2
    exit 1
  fi
  sleep 0.05
done
kinesis_ready || { echo "with-servers: moto_server not ready after 15s" >&2; cat "$run_dir/moto.log" >&2; exit 1; }
echo "with-servers: moto_server (Kinesis API) on 127.0.0.1:$kinesis_port (pid $kinesis_pid)"
export CORO_TEST_KINESIS_ENDPOINT="http://127.0.0.1:$kinesis_port"
export CORO_KINESIS_SERVER="$kinesis_bin"
# kinesis-mock (npm kinesis-local), for the test that stops and restarts a server: it
# creates its streams at start (INITIALIZE_STREAMS), which moto cannot.
kmock="${CORO_TOOLS:-$HOME/.cache/coro-tools}/kinesis-npm/node_modules/kinesis-local"
if [ -f "$kmock/main.js" ]; then export CORO_KINESIS_MOCK="$kmock"; fi
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_EC2_METADATA_DISABLED=true

# The Pub/Sub emulator (a JVM), in memory, in a process group of its own (setsid) so
# cleanup can end the launcher and its JVM together.
pubsub_port="$(free_port)"
setsid "$pubsub_bin" --host=127.0.0.1 --port="$pubsub_port" >"$run_dir/pubsub.log" 2>&1 &
pubsub_pid=$!
pubsub_pgid=$pubsub_pid
pids+=("$pubsub_pid")
pubsub_ready() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "http://127.0.0.1:$pubsub_port/" 2>/dev/null; }
for _ in $(seq 1 600); do
  pubsub_ready && break
  if ! kill -0 "$pubsub_pid" 2>/dev/null; then
    echo "with-servers: the Pub/Sub emulator exited at start:" >&2
    cat "$run_dir/pubsub.log" >&2
    exit 1
  fi
  sleep 0.05
done
pubsub_ready || { echo "with-servers: the Pub/Sub emulator not ready after 30s" >&2; cat "$run_dir/pubsub.log" >&2; exit 1; }
echo "with-servers: Pub/Sub emulator on 127.0.0.1:$pubsub_port (pid $pubsub_pid)"
export CORO_TEST_PUBSUB_EMULATOR_HOST="127.0.0.1:$pubsub_port"
export CORO_PUBSUB_EMULATOR="$pubsub_bin"
"$@"
