"""Input edge cases get a typed answer through the in-memory MCP client, never "Error executing tool"."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from mcp import Client
from mcp.types import CallToolResult

from lumos_mcp.api import ErrorInfo, tool_error
from lumos_mcp.audit import iter_records, verify
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.server import build_server
from lumos_mcp.service import Service
from lumos_mcp.telemetry.app import MAX_APP_VALUE, AppMetrics
from lumos_mcp.telemetry.trends import ShiftRule, compute_trends

POLICY = str(Path(__file__).parent / "data" / "policy-test.toml")
MODES = ["auto", "legacy"]
pytestmark = pytest.mark.anyio


def typed(result: CallToolResult) -> ErrorInfo:
    error = tool_error(result)
    assert error is not None, result.content
    return error


async def ok(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error and result.structured_content is not None, result.content
    return result.structured_content


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service(policy=POLICY)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("stage_sched_params", {"changes": {"vm.swappiness": 2**64}}, "changes.vm.swappiness"),
        ("stage_sched_params", {"changes": {"vm.swappiness": -(2**70)}}, "changes.vm.swappiness"),
        ("stage_sched_params", {"changes": {"vm.swappiness": 10}, "confirm_within_s": 10**30}, "confirm_within_s"),
        ("rank_configs", {"candidates": [{"label": "a"}, {"label": "b"}], "incumbent": 2**80}, "incumbent"),
        (
            "speculator_start",
            {"knobs": ["cgroup.batch.cpu_shares"], "metric": "m", "target": 1, "bounds": {"x": [0, 2**65]}},
            "bounds.x.1",
        ),
    ],
)
async def test_integers_beyond_64_bits_are_refused_as_invalid_arguments_naming_the_field(
    service: Service, fake: FakeKernel, mode: str, tool: str, args: dict[str, Any], field: str
) -> None:
    async with Client(build_server(service), mode=mode) as client:
        error = typed(await client.call_tool(tool, args))
    assert error.code == "invalid_arguments" and error.fields["arguments"] == [field]
    assert fake.read("proc/sys/vm/swappiness").strip() == "60"
    assert verify(service.audit.path).ok


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("report_app_metric", {"name": "api.p99_ms", "value": math.nan, "unit": "ms"}, "value"),
        ("report_app_metric", {"name": "api.p99_ms", "value": -math.inf, "unit": "ms"}, "value"),
        (
            "rank_configs",
            {"candidates": [{"label": "a", "signature": {"sched.x": math.nan}}, {"label": "b", "signature": {}}]},
            "candidates.0.signature.sched.x",
        ),
        (
            "rank_configs",
            {"candidates": [{"label": "a", "signature": {}}, {"label": "b", "signature": {"cpu": [1.0, math.inf]}}]},
            "candidates.1.signature.cpu.1",
        ),
    ],
)
async def test_nan_or_infinity_as_a_json_parser_delivers_it_is_refused_as_invalid_arguments(
    service: Service, tool: str, args: dict[str, Any], field: str
) -> None:
    # The SDK's JSON-RPC parser turns the literals NaN and 1e999 into float nan/inf; the
    # Python and TypeScript clients send null instead, so this calls the server directly.
    result = await build_server(service).call_tool(tool, args)
    assert isinstance(result, CallToolResult)
    error = typed(result)
    assert error.code == "invalid_arguments" and error.fields["arguments"] == [field]


@pytest.mark.parametrize("mode", MODES)
async def test_nan_sent_by_the_python_client_arrives_as_null_and_is_refused_by_type(
    service: Service, mode: str
) -> None:
    async with Client(build_server(service), mode=mode) as client:
        error = typed(await client.call_tool("report_app_metric", {"name": "a.b", "value": math.nan, "unit": "ms"}))
    assert error.code == "invalid_arguments" and error.fields["arguments"] == ["value"]


@pytest.mark.parametrize("mode", MODES)
async def test_rank_configs_refuses_a_signature_number_too_large_to_rank(service: Service, mode: str) -> None:
    candidates = [{"label": "a", "signature": {"sched.x": 1.0}}, {"label": "b", "signature": {"sched.x": 1.7e308}}]
    async with Client(build_server(service), mode=mode) as client:
        error = typed(await client.call_tool("rank_configs", {"candidates": candidates}))
    assert error.code == "invalid_arguments" and error.fields["arguments"] == ["candidates.1.signature"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_app_metric_whose_mean_would_overflow_is_refused_as_invalid_metric(
    service: Service, mode: str
) -> None:
    async with Client(build_server(service), mode=mode) as client:
        error = typed(await client.call_tool("report_app_metric", {"name": "a.b", "value": 1.7e308, "unit": "ms"}))
        largest = await ok(client, "report_app_metric", {"name": "a.b", "value": MAX_APP_VALUE, "unit": "ms"})
    assert error.code == "invalid_metric" and error.fields["name"] == "a.b"
    assert largest["accepted"] is True


def test_summaries_and_trends_of_the_largest_accepted_values_stay_finite_numbers() -> None:
    now = [0.0]
    app = AppMetrics(clock=lambda: now[0])
    for i, value in enumerate([MAX_APP_VALUE, -MAX_APP_VALUE] * 10 + [MAX_APP_VALUE] * 10 + [1e-300] * 2):
        now[0] = float(i)
        app.report("a.b", value, "ms")
    summaries, _ = app.summaries(since=0.0, now=now[0])
    metrics, _ = compute_trends({"app.a.b": app.series()["a.b"]}, split_t=10.0, rule=ShiftRule())
    numbers = [v for v in (*summaries[0].values(), *metrics["app.a.b"].values()) if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    assert orjson.loads(orjson.dumps(summaries)) == summaries  # nothing became null on the way out


@pytest.mark.parametrize("mode", MODES)
async def test_a_rejected_1_mib_value_is_echoed_and_recorded_cut_and_says_so(service: Service, mode: str) -> None:
    huge = "9" * (1 << 20)
    async with Client(build_server(service), mode=mode) as client:
        result = await client.call_tool("stage_sched_params", {"changes": {"vm.swappiness": huge}})
    error = typed(result)
    assert error.code == "invalid_value"
    assert error.fields["value"].startswith("9" * 256) and "cut: 1048576 chars" in error.fields["value"]
    assert "cut:" in error.message and len(error.message) < 2048
    assert sum(len(c.text) for c in result.content if c.type == "text") < 8192
    rejected = [r for r in iter_records(service.audit.path) if r["event"] == "stage_rejected"]
    assert rejected and len(orjson.dumps(rejected[-1])) < 8192
    assert "cut: 1048576 chars" in rejected[-1]["changes"]["vm.swappiness"]
    assert verify(service.audit.path).ok


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_arguments_are_refused_naming_the_field_and_nothing_happens(
    service: Service, fake: FakeKernel, mode: str
) -> None:
    async with Client(build_server(service), mode=mode) as client:
        tools = (await client.list_tools()).tools
        staged = await ok(client, "stage_sched_params", {"changes": {"vm.swappiness": 10}})
        await ok(client, "apply", {"txid": staged["txid"]})
        error = typed(await client.call_tool("revert", {"txid": staged["txid"], "froce": True}))
        status = typed(await client.call_tool("get_status", {"verbose": 1, "x": 2}))
    assert all(t.input_schema.get("additionalProperties") is False for t in tools)
    assert error.code == "invalid_arguments" and error.fields["arguments"] == ["froce"]
    assert status.code == "invalid_arguments" and status.fields["arguments"] == ["verbose", "x"]
    assert fake.read("proc/sys/vm/swappiness").strip() == "10"  # still applied: the revert did not run


async def test_the_tune_latency_prompt_has_a_description(service: Service) -> None:
    async with Client(build_server(service)) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert prompts["tune-latency"].description


@pytest.mark.parametrize("mode", MODES)
async def test_observe_mode_answers_mode_refused_from_every_write_tool(
    make_service: Callable[..., Service], fake: FakeKernel, mode: str
) -> None:
    service = make_service(mode="observe", policy=POLICY)
    async with Client(build_server(service), mode=mode) as client:
        tools = (await client.list_tools()).tools
        staged = await ok(client, "stage_sched_params", {"changes": {"vm.swappiness": 10}})
        args: dict[str, dict[str, Any]] = {
            "apply": {"txid": staged["txid"]},
            "commit": {"txid": staged["txid"]},
            "revert": {"txid": staged["txid"]},
            "speculator_start": {"knobs": ["cgroup.batch.cpu_shares"], "metric": "app.p95_ms", "target": 1.0},
            "speculator_stop": {},
        }
        writers = {t.name for t in tools if t.annotations is not None and t.annotations.destructive_hint}
        assert writers == set(args)
        codes = {name: typed(await client.call_tool(name, args[name])).code for name in sorted(writers)}
    assert codes == dict.fromkeys(writers, "mode_refused")
    assert fake.read("proc/sys/vm/swappiness").strip() == "60"
