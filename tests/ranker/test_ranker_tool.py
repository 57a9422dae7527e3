"""rank_configs through the in-memory MCP client, with a tiny model trained on the shipped data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

import lumos_mcp.server.ranker as server_ranker
from lumos_mcp.api import tool_error
from lumos_mcp.ranker.dataset import WindowRecord
from lumos_mcp.ranker.model import NOVEL, RankerModel
from lumos_mcp.server import build_server
from lumos_mcp.service import Service
from tests.ranker.ranker_helpers import far_away

pytestmark = pytest.mark.anyio
POLICY = str(Path(__file__).resolve().parents[1] / "data" / "policy-test.toml")
Trained = tuple[RankerModel, list[WindowRecord]]


@pytest.fixture
def model_dir(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = trained[0].save(tmp_path / "model")
    monkeypatch.setattr(server_ranker, "DEFAULT_MODEL", path)
    return path


async def rank(service: Service, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    async with Client(build_server(service)) as client:
        result = await client.call_tool("rank_configs", args)
    error = tool_error(result)
    if error is not None:
        return True, {"error": error.model_dump()}
    assert not result.is_error and result.structured_content is not None, result.content
    return False, result.structured_content


async def test_rank_configs_orders_candidates_with_margins_and_the_archetype(
    make_service: Callable[..., Service], trained: Trained, model_dir: Path
) -> None:
    _, records = trained
    candidates = [{"label": f"w{i}", "config": r.config, "signature": r.features} for i, r in enumerate(records[:3])]
    is_error, data = await rank(make_service(policy=POLICY), {"candidates": candidates, "incumbent": 1})
    assert not is_error, data
    assert sorted(c["label"] for c in data["order"]) == ["w0", "w1", "w2"]
    assert [c["rank"] for c in data["order"]] == [1, 2, 3]
    assert next(c for c in data["order"] if c["label"] == "w1")["margin_vs_incumbent"] == 0.0
    assert data["incumbent"] == "w1"
    assert data["recommendation"] in {"w0", "w1", "w2"}
    assert data["keep_incumbent"] == (data["recommendation"] == "w1")
    assert data["archetype"].startswith("archetype") or data["archetype"] == NOVEL
    assert data["model"]["format_version"] == 1


async def test_rank_configs_says_novel_global_fallback_for_an_unseen_workload(
    make_service: Callable[..., Service], trained: Trained, model_dir: Path
) -> None:
    _, records = trained
    candidates = [
        {"label": "a", "signature": far_away(records[0].features)},
        {"label": "b", "signature": far_away(records[1].features)},
    ]
    is_error, data = await rank(make_service(policy=POLICY), {"candidates": candidates})
    assert not is_error
    assert data["archetype"] == NOVEL
    assert data["mahalanobis_distance"] > data["novelty_threshold"]


async def test_rank_configs_errors_are_typed(
    make_service: Callable[..., Service], trained: Trained, model_dir: Path
) -> None:
    service = make_service(policy=POLICY)
    sig = trained[1][0].features
    is_error, data = await rank(service, {"candidates": [{"label": "a", "signature": sig}, {"label": "b"}]})
    assert is_error and data["error"]["code"] == "ranker_model_error"
    is_error, data = await rank(
        service, {"candidates": [{"label": "a", "signature": sig}, {"label": "b", "txid": "tx-nope"}]}
    )
    assert is_error and data["error"]["code"] == "unknown_transaction"
    is_error, data = await rank(
        service, {"candidates": [{"label": "a", "signature": sig}, {"label": "b", "signature": sig}], "incumbent": 5}
    )
    assert is_error and data["error"]["fields"]["incumbent"] == 5


async def test_without_a_model_rank_configs_says_how_to_train_one(
    make_service: Callable[..., Service], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_ranker, "DEFAULT_MODEL", tmp_path / "absent")
    sig = {"sched.ctx_switches_per_s": 1.0}
    is_error, data = await rank(
        make_service(policy=POLICY),
        {"candidates": [{"label": "a", "signature": sig}, {"label": "b", "signature": sig}]},
    )
    assert is_error and data["error"]["code"] == "ranker_model_error"
