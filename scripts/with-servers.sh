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
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/coro-servers.XXXXXX")"
pids=()

cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
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
"$@"
