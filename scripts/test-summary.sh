#!/usr/bin/env bash
# Runs a cargo test command, passes its output through, and ends with one line that
# adds up every "test result:" line: "tests: N passed, M failed". Exits as cargo did.
set -uo pipefail
log="$(mktemp "${TMPDIR:-/tmp}/coro-test.XXXXXX")"
"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
