#!/usr/bin/env bash
# Decodes the bundled example messages with `coro decode` and prints a summary table,
# then the document Choria's adapter would publish for the registration example.
set -euo pipefail
cd "$(dirname "$0")/.."
coro="${CARGO_TARGET_DIR:-target}/debug/coro"

python3 - "$coro" <<'PY'
import glob, json, os, subprocess, sys

coro = sys.argv[1]
rows = [("MESSAGE", "RESULT", "VER", "KIND", "SENDER", "AGENT", "REQUEST ID", "CHORIA TIME", "BODY / ERROR")]
for path in sorted(glob.glob("examples/messages/*.wire")):
    name = os.path.basename(path)[: -len(".wire")]
    run = subprocess.run([coro, "decode", "--subject", "demo", path], capture_output=True, text=True)
    if run.returncode == 0:
        r = json.loads(run.stdout)
        body = json.dumps(r["body"], separators=(",", ":")) if r["body_encoding"] == "json" else r["body"]
        rows.append((name, "ok", "v%d" % r["version"], r["kind"], r["sender"], r["agent"],
                     r["requestid"][:12], r["time"], body[:40]))
    else:
        rows.append((name, "rejected (exit %d)" % run.returncode, "-", "-", "-", "-", "-", "-",
                     run.stderr.strip().removeprefix("error: ")))
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
print("coro decode: the bundled example messages (examples/messages/)\n")
for row in rows:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
PY
echo
echo "What Choria's adapter publishes for 03_v1_registration (coro decode --as choria-streams):"
"$coro" decode --as choria-streams examples/messages/03_v1_registration.wire
