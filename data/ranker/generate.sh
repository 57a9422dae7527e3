#!/bin/sh
# Regenerate data/ranker/windows.jsonl on this host (root; about 33 minutes of locked runs).
# Each workload is one locked run of about 11 minutes (50 windows without, 50 with the antagonist).
set -eu
cd "$(dirname "$0")/../.."
PY=${PY:-/work/venv/bin/python}
OUT=${OUT:-data/ranker/windows.jsonl}
for w in probe batch vm; do
    flock /work/measure.lock "$PY" -m lumos_mcp.ranker.generate --workload "$w" --antagonist both \
        --windows "${WINDOWS:-50}" --seed "${SEED:-1}" --out "$OUT"
done
