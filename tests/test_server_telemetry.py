"""read_telemetry and report_app_metric through the MCP client."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import jsonschema
import pytest
from mcp import Client

from lumos_mcp.api import tool_error
from lumos_mcp.server import build_server
from lumos_mcp.service import Service
from lumos_mcp.telemetry.brief import MAX_SHIFTS

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_read_telemetry_waits_for_a_fresh_window_with_progress(
    make_service: Callable[..., Service], mode: str
) -> None:
    service = make_service()
    updates: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(progress)

    with anyio.fail_after(30):
        async with Client(build_server(service), mode=mode) as client:
            result = await client.call_tool(
                "read_telemetry", {"window_s": 0.6, "fresh": True, "detail": "full"}, progress_callback=on_progress
            )
    assert not result.is_error, result.content
    assert result.structured_content is not None and result.structured_content["detail"] == "full"
    sig = result.structured_content["signature"]
    assert sig["schema_version"] == "1" and sig["samples_used"] >= 3
    assert sig["cpu"]["total"]["util_pct"] >= 0
    assert "perf" in sig["unavailable"] or sig["perf"] is None or "perf" not in sig["sections"]
    assert updates and updates == sorted(updates)


async def test_reported_app_metrics_appear_in_the_signature(make_service: Callable[..., Service]) -> None:
    service = make_service()
    with anyio.fail_after(30):
        async with Client(build_server(service)) as client:
            await client.call_tool("read_telemetry", {"window_s": 3, "fresh": True})  # the buffer is warm
            for value in (4.0, 6.0, 5.0):
                ack = await client.call_tool(
                    "report_app_metric", {"name": "api.latency_p99_ms", "value": value, "unit": "ms"}
                )
                assert not ack.is_error, ack.content
            result = await client.call_tool("read_telemetry", {"window_s": 3, "sections": ["app"]})
    app = result.structured_content["signature"]["app"]  # type: ignore[index]
    assert [m["name"] for m in app] == ["api.latency_p99_ms"] and app[0]["count"] == 3


async def test_bad_telemetry_requests_are_typed_errors(make_service: Callable[..., Service]) -> None:
    service = make_service()
    async with Client(build_server(service)) as client:
        bad = await client.call_tool("read_telemetry", {"window_s": 1, "sections": ["nonsense"]})
        assert (error := tool_error(bad)) is not None and error.code == "invalid_telemetry_request"
        nan = await client.call_tool("report_app_metric", {"name": "../x", "value": 1, "unit": "ms"})
        assert (error := tool_error(nan)) is not None and error.code == "invalid_metric"


async def test_read_telemetry_answers_the_brief_by_default_and_every_field_with_detail_full(
    make_service: Callable[..., Service],
) -> None:
    service = make_service()
    with anyio.fail_after(30):
        async with Client(build_server(service)) as client:
            await client.call_tool("read_telemetry", {"window_s": 0.5, "fresh": True})
            await client.call_tool("read_telemetry", {"window_s": 0.5, "fresh": True})  # two windows: trends
            # fresh: a loaded machine can delay the sampler past a buffered window's edge
            brief = await client.call_tool("read_telemetry", {"window_s": 0.5, "fresh": True})
            full = await client.call_tool("read_telemetry", {"window_s": 0.5, "fresh": True, "detail": "full"})
            tool = next(t for t in (await client.list_tools()).tools if t.name == "read_telemetry")
    assert not brief.is_error and not full.is_error, (brief.content, full.content)
    b, f = brief.structured_content, full.structured_content
    assert b is not None and f is not None
    assert b["detail"] == "summary" and "per_core" not in b["signature"]["cpu"]
    assert b["signature"]["notes"]["psi"] and b["signature"]["psi"]["cpu"]["some"]["avg10_pct"] >= 0
    assert b["trends"] is not None and len(b["trends"]["shifts"]) <= MAX_SHIFTS
    assert f["detail"] == "full" and f["signature"]["cpu"]["per_core"] and f["trends"]["metrics"]
    schema = tool.output_schema
    assert schema is not None
    jsonschema.validate(b, schema)
    jsonschema.validate(f, schema)
    # exact per level: each level's shape under the other's label is rejected
    for data, wrong in ((b, "full"), (f, "summary")):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**data, "detail": wrong}, schema)


async def test_read_telemetry_sections_narrow_the_brief(make_service: Callable[..., Service]) -> None:
    service = make_service()
    with anyio.fail_after(30):
        async with Client(build_server(service)) as client:
            result = await client.call_tool("read_telemetry", {"window_s": 0.5, "fresh": True, "sections": ["psi"]})
    data = result.structured_content
    assert data is not None and data["detail"] == "summary"
    assert data["signature"]["psi"] is not None and data["signature"]["cpu"] is None
    assert set(data["signature"]["notes"]) == {"psi"}
