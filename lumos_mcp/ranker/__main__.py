"""``python -m lumos_mcp.ranker train|evaluate``: fit the shipped model, or print the evaluation table.

python -m lumos_mcp.ranker train --data data/ranker/windows.jsonl --out data/ranker/model
python -m lumos_mcp.ranker evaluate --data data/ranker/windows.jsonl > docs/ranker-evaluation.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lumos_mcp.ranker.dataset import WindowRecord, load_records
from lumos_mcp.ranker.model import DEFAULT_DELTA, RankerModel, TrainParams


def clean(records: list[WindowRecord], max_noise_cpus: float) -> list[WindowRecord]:
    """Drop windows where something outside the arena used more than ``max_noise_cpus``."""
    return [r for r in records if r.noise_cpus <= max_noise_cpus]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lumos_mcp.ranker")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("train", "evaluate"):
        s = sub.add_parser(name)
        s.add_argument("--data", type=Path, nargs="+", required=True)
        s.add_argument("--max-noise-cpus", type=float, default=math.inf, help="drop noisier windows")
        s.add_argument("--no-cgroups", action="store_true", help="host counters only (no per-cgroup CPU)")
    sub.choices["train"].add_argument("--out", type=Path, required=True)
    sub.choices["train"].add_argument("--delta", type=float, default=DEFAULT_DELTA)
    args = p.parse_args(argv)
    records = load_records(*args.data)
    kept = clean(records, args.max_noise_cpus)
    print(f"{len(kept)} of {len(records)} windows kept (noise <= {args.max_noise_cpus} CPUs)", file=sys.stderr)
    params = TrainParams(with_cgroups=not args.no_cgroups)
    if args.command == "train":
        model = RankerModel.train(kept, params, delta=args.delta)
        model.save(args.out)
        for a in model.archetypes:
            print(f"archetype {a.id}: {a.size} windows {a.composition} threshold {a.threshold:.2f}", file=sys.stderr)
        print(f"saved {args.out}", file=sys.stderr)
        return 0
    from lumos_mcp.ranker.evaluate import evaluate, markdown

    print(markdown(evaluate(kept, params)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
