from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from lumos_mcp.arena.ranker_lab.strategy import RankerStrategy
from lumos_mcp.ranker.dataset import WindowRecord
from lumos_mcp.ranker.model import RankerModel

Trained = tuple[RankerModel, list[WindowRecord]]


class SignatureOnly(Mapping[str, Any]):
    """An arena result whose true metric must never be read by the strategy."""

    def __init__(self, signature: dict[str, float]) -> None:
        self._data = {"signature": signature, "p99_us": 123.0}

    def __getitem__(self, key: str) -> Any:
        if key != "signature":
            raise AssertionError(f"the zero-mod strategy read {key!r}")
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(["signature"])

    def __len__(self) -> int:
        return 1


def test_the_strategy_promotes_a_challenger_only_when_its_margin_reaches_delta(trained: Trained) -> None:
    model, records = trained
    space = {"shares": [128, 256, 512, 1024]}
    strategy = RankerStrategy(model, space, start={"shares": 1024}, delta=0.2, seed=1)
    by_shares = {s: records[i].features for i, s in enumerate(space["shares"])}
    assert strategy.propose([]) == {"shares": 1024}
    assert strategy.observe({"shares": 1024}, SignatureOnly(by_shares[1024])) is None
    for _ in range(5):
        config = strategy.propose([])
        before = dict(strategy.incumbent)
        decision = strategy.observe(config, SignatureOnly(by_shares[int(config["shares"])]))
        if decision is None:
            continue
        assert decision.promoted == (decision.margin >= 0.2)
        assert strategy.incumbent == (config if decision.promoted else before)
    assert strategy.decisions


def test_the_strategy_refuses_a_result_without_a_signature(trained: Trained) -> None:
    strategy = RankerStrategy(trained[0], {"x": [1, 2]}, start={"x": 1})
    with pytest.raises(ValueError):
        strategy.observe({"x": 1}, {"p99_us": 1.0})
