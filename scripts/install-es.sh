#!/usr/bin/env bash
# Installs noida-db 0.2.3 (PyPI; an Elasticsearch-API emulator shipping one native
# binary, no JVM) into a venv under $CORO_TOOLS (default ~/.cache/coro-tools), once.
# Prints the path of the native binary, which is started directly so its PID is the
# server's (the venv's `noida-db` is a Python wrapper around it).
#
# There is no real Elasticsearch in the package registries this project may use; see
# README.md "Elasticsearch" for which behaviours are verified only against noida-db.
set -euo pipefail

version=0.2.3
tools="${CORO_TOOLS:-$HOME/.cache/coro-tools}"
venv="$tools/es-venv"

binary() {
  "$venv/bin/python" -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))' 2>/dev/null
}

installed() {
  # No `pip show | grep -q`: grep quitting early would fail pip under pipefail.
  [ -x "$venv/bin/python" ] &&
    [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("noida-db"))' 2>/dev/null)" = "$version" ] &&
    [ -x "$(binary)" ]
}

if installed; then
  binary
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "install-es: installing python3-venv" >&2
  apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
fi
mkdir -p "$tools"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check "noida-db==$version" >&2
if ! installed; then
  echo "install-es: noida-db $version did not install a runnable binary under $venv" >&2
  exit 1
fi
binary
