#!/usr/bin/env bash
# Installs the local Kinesis servers for the Kinesis tests, once, under $CORO_TOOLS
# (default ~/.cache/coro-tools): moto_server (PyPI moto[server], in a venv) and
# kinesis-mock (npm kinesis-local). Prints moto_server's path. No server here throttles;
# the throttling tests put a fault-injecting proxy of their own in front of moto.
set -euo pipefail

moto_version=5.2.5
kmock_version=0.6.2
tools="${CORO_TOOLS:-$HOME/.cache/coro-tools}"
venv="$tools/kinesis-venv"
bin="$venv/bin/moto_server"
npm_dir="$tools/kinesis-npm"

if ! { [ -x "$bin" ] && "$venv/bin/python" -c 'import moto.server' >/dev/null 2>&1; }; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "install-kinesis: installing python3-venv" >&2
    apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
  fi
  mkdir -p "$tools"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version" >&2
  echo "install-kinesis: moto $moto_version" >&2
fi

# kinesis-mock: per-record failures closest to AWS; optional (npm may be missing).
if [ ! -f "$npm_dir/node_modules/kinesis-local/main.js" ] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --silent --no-audit --no-fund "kinesis-local@$kmock_version" >&2) ||
    echo "install-kinesis: npm kinesis-local $kmock_version did not install (not needed by the tests)" >&2
fi
echo "$bin"
