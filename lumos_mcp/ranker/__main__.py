"""``python -m lumos_mcp.ranker train``: fit the shipped model.

python -m lumos_mcp.ranker train --data data/ranker/windows.jsonl --out data/ranker/model

The evaluation table is the lab's: ``python -m lumos_mcp.arena.ranker_lab evaluate``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lumos_mcp.ranker.dataset import load_records, quiet_records
from lumos_mcp.ranker.model import DEFAULT_DELTA, RankerModel, TrainParams


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The dataset options ``train`` and the lab's ``evaluate`` share."""
    p.add_argument("--data", type=Path, nargs="+", required=True)
    p.add_argument("--max-noise-cpus", type=float, default=math.inf, help="drop noisier windows")
    p.add_argument("--no-cgroups", action="store_true", help="host counters only (no per-cgroup CPU)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lumos_mcp.ranker")
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="fit the model on recorded windows and save it")
    add_data_arguments(train)
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--delta", type=float, default=DEFAULT_DELTA)
    args = p.parse_args(argv)
    records = load_records(*args.data)
    kept = quiet_records(records, args.max_noise_cpus)
    print(f"{len(kept)} of {len(records)} windows kept (noise <= {args.max_noise_cpus} CPUs)", file=sys.stderr)
    model = RankerModel.train(kept, TrainParams(with_cgroups=not args.no_cgroups), delta=args.delta)
    model.save(args.out)
    for a in model.archetypes:
        print(f"archetype {a.id}: {a.size} windows {a.composition} threshold {a.threshold:.2f}", file=sys.stderr)
    print(f"saved {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
