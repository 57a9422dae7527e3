"""The speculator tools, in memory through the MCP client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client

from lumos_mcp.api import tool_error
from lumos_mcp.server import build_server
from lumos_mcp.service import Service

KNOB = "cgroup.batch.cpu_shares"


async def call(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(tool, args or {})
    error = tool_error(result)
    if error is not None:
        return {"is_error": True, "error": error.model_dump()}
    assert not result.is_error and result.structured_content is not None, result.content
    return {"is_error": False, **result.structured_content}


@pytest.mark.anyio
async def test_start_status_and_stop_run_the_speculator_in_the_server_loop(
    make_service: Callable[..., Service],
) -> None:
    service = make_service()
    async with Client(build_server(service)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name in ("speculator_start", "speculator_stop", "speculator_status"):
            assert tools[name].annotations is not None and tools[name].output_schema is not None
        started = await call(
            client,
            "speculator_start",
            {"knobs": [KNOB], "metric": "app.p95_ms", "target": 1.0, "bounds": {KNOB: [256, 1024]}},
        )
        assert not started["is_error"] and started["knobs"][KNOB]["lo"] == 256
        again = await call(client, "speculator_start", {"knobs": [KNOB], "metric": "app.p95_ms", "target": 1.0})
        assert again["is_error"] and again["error"]["code"] == "speculator_state"
        status = await call(client, "speculator_status")
        assert status["knobs"][KNOB]["hi"] == 1024
        stopped = await call(client, "speculator_stop")
        assert not stopped["is_error"] and stopped["running"] is False


@pytest.mark.anyio
async def test_a_knob_outside_the_envelope_or_bounds_wider_than_it_are_refused(
    make_service: Callable[..., Service],
) -> None:
    service = make_service()
    async with Client(build_server(service)) as client:
        outside = await call(client, "speculator_start", {"knobs": ["vm.swappiness"], "metric": "x", "target": 1.0})
        assert outside["is_error"] and outside["error"]["code"] == "invalid_value"
        wide = await call(
            client, "speculator_start", {"knobs": [KNOB], "metric": "x", "target": 1.0, "bounds": {KNOB: [2, 9999]}}
        )
        assert wide["is_error"] and wide["error"]["code"] == "invalid_value"
        assert (await call(client, "speculator_status"))["running"] is False
