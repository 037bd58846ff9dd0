#!/usr/bin/env bash
# Fuzzes the Choria payload decoder (fuzz/fuzz_targets/decode.rs) with cargo-fuzz.
#
# Usage: scripts/fuzz.sh [SECONDS]    (default 600)
#
# Only a stable toolchain is available, so RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the
# -Z flags (sanitizer, coverage) it needs. The corpus is seeded from the shared Choria
# fixtures the first time. Exits non-zero when libFuzzer left crash artifacts.
set -euo pipefail

SECONDS_TO_RUN="${1:-600}"
if ! [[ "$SECONDS_TO_RUN" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi

ROOT="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
FUZZ="$ROOT/fuzz"
TARGET=decode
CORPUS="$FUZZ/corpus/$TARGET"
ARTIFACTS="$FUZZ/artifacts/$TARGET"
FIXTURES="$ROOT/../shared/choria/fixtures"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1

mkdir -p "$CORPUS" "$ARTIFACTS"
if [ -z "$(ls -A "$CORPUS")" ]; then
    if [ -d "$FIXTURES" ]; then
        echo "==> seeding $CORPUS from $FIXTURES"
        # Name each seed by its content hash, as libFuzzer does: no clashes between
        # fixtures of the same name in different folders.
        while IFS= read -r -d '' f; do
            cp "$f" "$CORPUS/$(sha1sum "$f" | cut -d' ' -f1)"
        done < <(find "$FIXTURES" -type f \( -name '*.json' -o -name '*.wire' \) -print0)
    else
        echo "==> no fixtures at $FIXTURES; starting from an empty corpus" >&2
    fi
fi

# Crashes from earlier runs are not this run's.
before="$(find "$ARTIFACTS" -type f | sort)"

LOG="$FUZZ/fuzz-$TARGET.log"
echo "==> cargo fuzz run $TARGET for ${SECONDS_TO_RUN}s (log: $LOG)"
cd "$FUZZ"
status=0
# One fuzzing process (libFuzzer's default; an explicit -jobs would move the output
# into fuzz-N.log files): the machine has 2 cores and other builds run.
cargo fuzz run "$TARGET" -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 | tee "$LOG" || status=$?

echo
echo "==> summary"
grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::peak_rss_mb' "$LOG" || true
last="$(grep -E '^#[0-9]+' "$LOG" | tail -n 1 || true)"
[ -n "$last" ] && echo "last status: $last"
echo "corpus: $(find "$CORPUS" -type f | wc -l) files"
after="$(find "$ARTIFACTS" -type f | sort)"
new="$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')"
if [ -n "$new" ]; then
    echo "crashes found (cargo fuzz exit $status):"
    echo "$new"
    echo "all artifacts in $ARTIFACTS:"
    ls -l "$ARTIFACTS"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "cargo fuzz failed (exit $status) without leaving a crash artifact; see $LOG" >&2
    exit "$status"
fi
echo "crashes found: none"
