"""What the audit record keeps for the operator: the agent's rationale and the telemetry each
apply, commit, revert and auto-revert was decided on, bounded in size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client

from lumos_mcp.audit import iter_records
from lumos_mcp.evidence import FIELDS, MAX_SUMMARY_BYTES
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.server import build_server
from lumos_mcp.service import MAX_RATIONALE, Service

POLICY = str(Path(__file__).parent / "data" / "policy-test.toml")
pytestmark = pytest.mark.anyio


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def records(service: Service, event: str) -> list[dict[str, Any]]:
    return [r for r in iter_records(service.audit.path) if r["event"] == event]


async def test_stage_keeps_the_agents_rationale_in_the_audit_record(make_service: Callable[..., Service]) -> None:
    service = make_service(policy=POLICY)
    async with Client(build_server(service)) as client:
        await call(
            client,
            "stage_sched_params",
            {"changes": {"vm.swappiness": 20}, "rationale": "major faults climb while page cache is cold"},
        )
        await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 30}})
    first, second = records(service, "stage")
    assert first["rationale"] == "major faults climb while page cache is cold"
    assert second["rationale"] is None


async def test_a_rationale_longer_than_the_limit_is_refused_by_the_tool(make_service: Callable[..., Service]) -> None:
    service = make_service(policy=POLICY)
    async with Client(build_server(service)) as client:
        result = await client.call_tool(
            "stage_sched_params", {"changes": {"vm.swappiness": 20}, "rationale": "x" * (MAX_RATIONALE + 1)}
        )
    assert result.is_error
    assert records(service, "stage") == []


def test_a_long_rationale_from_an_in_process_caller_is_clipped(make_service: Callable[..., Service]) -> None:
    service = make_service(policy=POLICY)
    service.stage({"vm.swappiness": 20}, rationale="y" * 50_000)
    (stage,) = records(service, "stage")
    assert len(stage["rationale"]) < MAX_RATIONALE + 100


async def test_apply_commit_revert_and_auto_revert_records_carry_a_bounded_telemetry_summary(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=POLICY)
    async with Client(build_server(service)) as client:
        with anyio.fail_after(20):  # the lifespan's sampler needs two samples (0.2 s apart)
            while "unavailable" in service.evidence():
                await anyio.sleep(0.05)
        kept = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 20}})
        await call(client, "apply", {"txid": kept["txid"]})
        await call(client, "commit", {"txid": kept["txid"]})
        undone = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 25}})
        await call(client, "apply", {"txid": undone["txid"]})
        await call(client, "revert", {"txid": undone["txid"]})
        lapsed = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 30}, "confirm_within_s": 0.2})
        await call(client, "apply", {"txid": lapsed["txid"]})
        with anyio.fail_after(10):
            while not records(service, "auto_revert"):
                await anyio.sleep(0.05)
    names = {name for name, _ in FIELDS}
    for event in ("apply", "commit", "revert", "auto_revert"):
        for rec in records(service, event):
            summary = rec["telemetry"]
            assert "unavailable" not in summary, (event, summary)
            assert "cpu_util_pct" in summary and "load1" in summary
            assert set(summary) <= names | {"end_unix_s", "covered_s", "app_p95"}
            assert len(orjson.dumps(summary)) <= MAX_SUMMARY_BYTES
    (revert,) = records(service, "revert")
    assert revert["values"] == {"vm.swappiness": 20}
    (auto,) = records(service, "auto_revert")
    assert auto["values"] == {"vm.swappiness": 20}
    (first_apply, *_) = records(service, "apply")
    assert first_apply["originals"] == {"vm.swappiness": 60}


def test_records_say_why_telemetry_is_missing_when_the_sampler_has_too_little(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy=POLICY)  # no lifespan: the sampler never ran
    staged = service.stage({"vm.swappiness": 20})
    service.apply(staged.tx.id)
    (apply,) = records(service, "apply")
    assert apply["telemetry"] == {"unavailable": "telemetry_not_ready"}
