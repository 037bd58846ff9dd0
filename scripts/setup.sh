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
