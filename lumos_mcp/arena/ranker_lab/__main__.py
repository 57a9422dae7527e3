"""``python -m lumos_mcp.arena.ranker_lab evaluate``: the ranker's held-out evaluation table.

python -m lumos_mcp.arena.ranker_lab evaluate --data data/ranker/windows.jsonl > docs/ranker-evaluation.md
"""

from __future__ import annotations

import argparse
import sys

from lumos_mcp.arena.ranker_lab.evaluate import evaluate, markdown
from lumos_mcp.ranker.__main__ import add_data_arguments
from lumos_mcp.ranker.dataset import load_records, quiet_records
from lumos_mcp.ranker.model import TrainParams


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lumos_mcp.arena.ranker_lab")
    sub = p.add_subparsers(dest="command", required=True)
    add_data_arguments(sub.add_parser("evaluate", help="print the held-out evaluation table (markdown)"))
    args = p.parse_args(argv)
    records = load_records(*args.data)
    kept = quiet_records(records, args.max_noise_cpus)
    print(f"{len(kept)} of {len(records)} windows kept (noise <= {args.max_noise_cpus} CPUs)", file=sys.stderr)
    print(markdown(evaluate(kept, TrainParams(with_cgroups=not args.no_cgroups))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
