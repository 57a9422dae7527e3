"""read_telemetry and report_app_metric through the MCP client."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from mcp import Client

from lumos_mcp.api import tool_error
from lumos_mcp.server import build_server
from lumos_mcp.service import Service

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
                "read_telemetry", {"window_s": 0.6, "fresh": True}, progress_callback=on_progress
            )
    assert not result.is_error, result.content
    sig = result.structured_content["signature"]  # type: ignore[index]
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
