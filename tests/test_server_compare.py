"""compare_windows and report_app_metric's batches and histograms through the MCP client, on a
fake clock: each verdict, the txid form (the window before a change's apply against the window
since), and the typed errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from mcp import Client

from lumos_mcp.api import tool_error
from lumos_mcp.server import build_server
from lumos_mcp.service import Service
from tests.txn_helpers import FakeClock

pytestmark = pytest.mark.anyio
POLICY = str(Path(__file__).parent / "data" / "policy-test.toml")
BEFORE = [float(x) for x in range(10, 30)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
def service(make_service: Callable[..., Service], clock: FakeClock) -> Service:
    service = make_service(policy=POLICY, clock=clock)
    service.telemetry.app.clock = clock  # app metrics on the same clock as the transactions
    return service


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.parametrize(
    ("after", "lower_is_better", "verdict"),
    [
        ([float(x) for x in range(0, 20)], True, "better"),
        ([float(x) for x in range(20, 40)], True, "worse"),
        ([float(x) for x in range(20, 40)], False, "better"),
        ([float(x) for x in range(10, 30)], True, "no evidence"),
        ([15.0, 16.0], True, "no evidence"),  # too few samples: a verdict, not an error
    ],
)
async def test_compare_windows_answers_each_verdict_for_samples_reported_before_and_after(
    service: Service, clock: FakeClock, after: list[float], lower_is_better: bool, verdict: str
) -> None:
    with anyio.fail_after(60):
        async with Client(build_server(service)) as client:
            ack = await call(client, "report_app_metric", {"name": "api.ms", "unit": "ms", "values": BEFORE})
            clock.advance(60)
            await call(client, "report_app_metric", {"name": "api.ms", "unit": "ms", "values": after})
            clock.advance(1)
            found = await call(
                client,
                "compare_windows",
                {"metric": "api.ms", "before": [120, 30], "after": [30, 0], "lower_is_better": lower_is_better},
            )
            tool = next(t for t in (await client.list_tools()).tools if t.name == "compare_windows")
    assert ack["kind"] == "samples" and ack["samples"] == len(BEFORE) and ack["value"] is None
    assert found["verdict"] == verdict and (found["n_before"], found["n_after"]) == (20, len(after))
    assert (found["before_ago_s"], found["after_ago_s"], found["unit"]) == ([120, 30], [30, 0], "ms")
    if len(after) >= 3:
        assert found["low"] <= found["effect"] <= found["high"]
        assert found["effect"] == pytest.approx(found["after"] - found["before"])
    else:
        assert found["low"] is None and found["high"] is None
    assert tool.output_schema is not None
    jsonschema.validate(found, tool.output_schema)
    a = tool.annotations
    assert a is not None and (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint) == (
        True,
        False,
        True,
        False,
    )


async def test_compare_windows_with_a_txid_compares_the_window_since_apply_with_the_one_before(
    service: Service, clock: FakeClock
) -> None:
    with anyio.fail_after(60):
        async with Client(build_server(service)) as client:
            # a histogram of counters, scraped-style: the first report seeds, later ones are deltas
            hist = "api.latency_ms"
            seeded = await call(
                client,
                "report_app_metric",
                {
                    "name": hist,
                    "unit": "ms",
                    "histogram": [{"le": 5, "count": 0}, {"le": 10, "count": 0}, {"le": "+Inf", "count": 0}],
                },
            )
            clock.advance(10)
            await call(
                client,
                "report_app_metric",
                {
                    "name": hist,
                    "unit": "ms",
                    "histogram": [{"le": 5, "count": 10}, {"le": 10, "count": 40}, {"le": "+Inf", "count": 40}],
                },
            )
            await call(client, "report_app_metric", {"name": "p99.ms", "unit": "ms", "values": BEFORE})
            clock.advance(20)
            staged = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 15}})
            await call(client, "apply", {"txid": staged["txid"]})
            clock.advance(10)
            after = [float(x) for x in range(0, 20)]
            await call(client, "report_app_metric", {"name": "p99.ms", "unit": "ms", "values": after})
            delta = await call(
                client,
                "report_app_metric",
                {
                    "name": hist,
                    "unit": "ms",
                    "histogram": [{"le": 5, "count": 50}, {"le": 10, "count": 80}, {"le": "+Inf", "count": 80}],
                },
            )
            clock.advance(20)
            found = await call(client, "compare_windows", {"metric": "p99.ms", "txid": staged["txid"]})
            from_histogram = await call(client, "compare_windows", {"metric": hist, "txid": staged["txid"]})
            short = await call(client, "compare_windows", {"metric": "p99.ms", "txid": staged["txid"], "window_s": 5})
    assert seeded["samples"] == 0 and delta["samples"] == 40
    assert found["verdict"] == "better" and found["txid"] == staged["txid"]
    assert (found["before_ago_s"], found["after_ago_s"]) == ([60, 30], [30, 0])
    assert (found["n_before"], found["n_after"]) == (20, 20)
    # before: 10 in (0, 5], 30 in (5, 10]; after: 40 in (0, 5], none above: lower is better
    assert (from_histogram["verdict"], from_histogram["n_before"], from_histogram["n_after"]) == ("better", 40, 40)
    # the first 5 s after the apply hold no sample: no evidence, not an error
    assert (short["before_ago_s"], short["after_ago_s"]) == ([35, 30], [30, 25])
    assert short["verdict"] == "no evidence" and short["n_after"] == 0


async def test_compare_windows_errors_are_typed(service: Service, clock: FakeClock) -> None:
    async with Client(build_server(service)) as client:
        await call(client, "report_app_metric", {"name": "api.ms", "unit": "ms", "value": 3.0})
        staged = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 15}})
        cases = {
            ("unknown_metric", "metric"): {"metric": "nope", "before": [20, 10], "after": [10, 0]},
            ("invalid_window", "before"): {"metric": "api.ms", "before": [10, 20], "after": [5, 0]},
            ("invalid_window", "after"): {"metric": "api.ms", "before": [20, 10], "after": [15, 0]},
            ("invalid_window", "txid"): {"metric": "api.ms", "txid": staged["txid"]},  # staged, never applied
            ("unknown_transaction", "txid"): {"metric": "api.ms", "txid": "tx-nope"},
            ("invalid_arguments", "before"): {"metric": "api.ms", "before": [20], "after": [10, 0]},
        }
        answers = {key: await client.call_tool("compare_windows", args) for key, args in cases.items()}
        both = await client.call_tool(
            "compare_windows", {"metric": "api.ms", "txid": staged["txid"], "before": [20, 10], "after": [10, 0]}
        )
        neither = await client.call_tool("compare_windows", {"metric": "api.ms"})
    for (code, field), result in answers.items():
        error = tool_error(result)
        assert error is not None and error.code == code, (code, result.content)
        if code == "unknown_metric":
            assert error.fields["metric"] == "nope" and error.fields["known"] == ["api.ms"]
        elif code == "invalid_window":
            assert error.fields["window"] == field
        elif code == "invalid_arguments":
            assert error.fields["arguments"] == ["before"]
    assert (error := tool_error(both)) is not None and error.code == "invalid_window"
    assert error.fields["window"] == "txid"
    assert (error := tool_error(neither)) is not None and error.code == "invalid_window"


@pytest.mark.parametrize(
    ("args", "code", "field"),
    [
        ({"value": 1.0, "values": [1.0]}, "invalid_arguments", ["value", "values"]),
        ({}, "invalid_arguments", ["value"]),
        ({"value": 1.0, "ages_s": [0.0]}, "invalid_arguments", ["ages_s"]),
        ({"values": [1.0, 2.0], "ages_s": [0.0, 7200.0]}, "invalid_metric", "ages_s.1"),
        ({"histogram": [{"le": 1, "count": 5}, {"le": 2, "count": 3}]}, "invalid_metric", "histogram"),
    ],
)
async def test_report_app_metric_refuses_malformed_batches_and_histograms_naming_the_field(
    service: Service, args: dict[str, Any], code: str, field: str | list[str]
) -> None:
    async with Client(build_server(service)) as client:
        result = await client.call_tool("report_app_metric", {"name": "api.ms", "unit": "ms", **args})
    error = tool_error(result)
    assert error is not None and error.code == code
    assert error.fields["field" if code == "invalid_metric" else "arguments"] == field
    assert service.telemetry.app.names() == []


async def test_report_app_metric_with_one_value_answers_as_before(service: Service) -> None:
    async with Client(build_server(service)) as client:
        ack = await call(client, "report_app_metric", {"name": "api.ms", "value": 4.5, "unit": "ms"})
    assert ack == {"name": "api.ms", "value": 4.5, "unit": "ms", "accepted": True, "kind": "value", "samples": 1}


async def test_the_tune_latency_prompt_tells_the_model_to_keep_only_on_better(service: Service) -> None:
    async with Client(build_server(service)) as client:
        prompt = await client.get_prompt("tune-latency", {})
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert "compare_windows" in text and '"better"' in text and '"worse"' in text and '"no evidence"' in text
