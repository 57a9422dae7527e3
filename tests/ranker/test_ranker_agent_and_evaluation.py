from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import Client

import lumos_mcp.server.ranker as server_ranker
from lumos_mcp.agents.expert import ExpertAgent, RoundLog
from lumos_mcp.arena.ranker_lab.evaluate import PROXIES, evaluate, markdown
from lumos_mcp.ranker.dataset import WindowRecord
from lumos_mcp.ranker.model import RankerModel
from lumos_mcp.server import build_server
from lumos_mcp.service import Service
from tests.ranker.ranker_helpers import TINY, shipped_subset

POLICY = str(Path(__file__).resolve().parents[1] / "data" / "policy-test.toml")
Trained = tuple[RankerModel, list[WindowRecord]]


@pytest.mark.anyio
async def test_the_expert_agent_asks_the_ranker_when_no_app_metric_is_reported(
    make_service: Callable[..., Service], trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, records = trained
    monkeypatch.setattr(server_ranker, "DEFAULT_MODEL", model.save(tmp_path / "model"))
    before, after = records[0].features, records[1].features
    margin, _ = model.compare(after, before)
    async with Client(build_server(make_service(policy=POLICY))) as client:
        agent = ExpertAgent(client, 1.0, lambda _: None)
        log = RoundLog(round=1, proposal=None)
        worse = await agent._ranker_says_worse(dict(before), dict(after), log)
    assert worse == (margin < model.delta)
    assert log.notes and "margin" in log.notes[0]


def test_the_evaluation_table_has_held_out_rows_and_every_proxy() -> None:
    rows = evaluate(shipped_subset(8), TINY, folds=2)
    splits = {r.split for r in rows}
    assert {"workload held out", "antagonist held out", "in distribution (2-fold)"} <= splits
    table = markdown(rows)
    assert all(name in table for name in PROXIES)
    assert "IPC" in table and "n/a*" in table  # no hardware counters on the reference host
