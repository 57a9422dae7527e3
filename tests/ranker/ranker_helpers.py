"""A tiny ranker trained on the shipped dataset (fast: a subset, few trees, two archetypes)."""

from __future__ import annotations

from pathlib import Path

from lumos_mcp.ranker.dataset import WindowRecord, load_records
from lumos_mcp.ranker.model import RankerModel, TrainParams

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "data" / "ranker" / "windows.jsonl"
SIGNATURE = REPO / "tests" / "data" / "ranker" / "signature.json"
TINY = TrainParams(max_iter=15, ks=(2,), min_archetype_pairs=40, n_components=3)


def shipped_subset(per_group: int = 14) -> list[WindowRecord]:
    """The first ``per_group`` windows of each workload/antagonist group of the shipped data."""
    seen: dict[tuple[str, bool], int] = {}
    out = []
    for r in load_records(SHIPPED):
        if seen.get(r.group, 0) < per_group:
            seen[r.group] = seen.get(r.group, 0) + 1
            out.append(r)
    return out


def tiny_model() -> tuple[RankerModel, list[WindowRecord]]:
    records = shipped_subset()
    return RankerModel.train(records, TINY), records


def far_away(features: dict[str, float]) -> dict[str, float]:
    """A signature unlike anything measured: every rate a thousand times larger."""
    return {k: v * 1000.0 + 1e6 for k, v in features.items()}
