#!/usr/bin/env bash
# Runs a command with the real servers the tests need, started once for the whole run
# on loopback, and stops them by PID afterwards, whatever happens.
#
#   scripts/with-servers.sh cargo test --workspace
#
# Exports CORO_TEST_NATS_URL (nats-server with JetStream) and CORO_NATS_SERVER (the
# binary, for tests that start their own).
set -euo pipefail
cd "$(dirname "$0")/.."

nats_bin="$(scripts/install-nats.sh)"
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

export CORO_TEST_NATS_URL="nats://127.0.0.1:$nats_port"
export CORO_NATS_SERVER="$nats_bin"
"$@"
