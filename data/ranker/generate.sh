#!/bin/sh
# Regenerate data/ranker/windows.jsonl on this host (root; about 28 minutes of locked runs).
# One locked run per workload (each under 12 minutes): windows per antagonist setting as shipped
# (probe 50, batch 50, vm 25: the vm run was cut to 25 to fit a busy shared lock).
set -eu
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
# MEASURE_LOCK: a lock file other measurements on this host also take (flock), if there is one.
OUT=${OUT:-data/ranker/windows.jsonl}
for spec in ${RUNS:-probe:50 batch:50 vm:25}; do
    ${MEASURE_LOCK:+flock "$MEASURE_LOCK"} "$PY" -m lumos_mcp.arena.ranker_lab.generate --workload "${spec%%:*}" --antagonist both \
        --windows "${spec##*:}" --seed "${SEED:-1}" --out "$OUT"
done
