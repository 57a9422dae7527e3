"""Real transports: a stdio server subprocess end to end, and HTTP on loopback with a bearer token."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from lumos_mcp.audit import verify
from tests.http_helpers import free_port, serving_http

pytestmark = pytest.mark.anyio
TOKEN = "test-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


def _env(state: Path) -> dict[str, str]:
    return {"LUMOS_STATE_DIR": str(state), "PYTHONPATH": str(ROOT), "LUMOS_MCP_TOKEN": TOKEN}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_server_runs_the_loop_end_to_end_in_sandbox(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lumos_mcp", "serve", "--mode", "sandbox"],
        env=_env(tmp_path),
        cwd=str(tmp_path),
    )
    with anyio.fail_after(60):
        async with Client(params, mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"stage_sched_params", "apply", "commit", "read_telemetry"} <= names
            tunables = (await client.call_tool("list_tunables", {"group": "vm"})).structured_content
            assert tunables is not None
            dbr = next(t for t in tunables["tunables"] if t["id"] == "vm.dirty_background_ratio")
            target = 5 if dbr["value"] != 5 else 6
            staged = (
                await client.call_tool("stage_sched_params", {"changes": {"vm.dirty_background_ratio": target}})
            ).structured_content
            assert staged is not None and staged["allowed"], staged
    assert verify(tmp_path / "audit.jsonl").ok
    assert (tmp_path / "sandbox").is_dir()  # sandbox writes live here, never on the host


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "lumos_mcp", "serve", "--http", "--port", str(port), "--mode", "sandbox"]
    with serving_http(cmd, {**os.environ, **_env(tmp_path)}, port, tmp_path / "server.log") as url:
        yield url


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_http_with_the_token_serves_tools(http_server: str, mode: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    async with http, Client(streamable_http_client(http_server, http_client=http), mode=mode) as client:
        status = await client.call_tool("get_status", {})
        assert status.structured_content is not None and status.structured_content["mode"] == "sandbox"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token-0123456789"}, 401),
        ({"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"}, 421),
    ],
)
async def test_http_refuses_missing_or_wrong_token_and_foreign_host(
    http_server: str, headers: dict[str, str], expected: int
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            http_server, json=body, headers={"Accept": "application/json, text/event-stream", **headers}
        )
    assert response.status_code == expected


def test_http_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in {**os.environ, **_env(tmp_path)}.items() if k != "LUMOS_MCP_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "lumos_mcp", "serve", "--http"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "token" in done.stderr


def test_http_refuses_a_non_loopback_bind_without_the_flag(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lumos_mcp", "serve", "--http", "--host", "0.0.0.0"],
        env={**os.environ, **_env(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "--allow-remote" in done.stderr


def test_a_second_server_on_the_same_state_dir_refuses_naming_the_first(tmp_path: Path) -> None:
    from lumos_mcp.errors import StateLockedError
    from lumos_mcp.service import Service, ServiceConfig

    first = Service(ServiceConfig(mode="sandbox", state_dir=tmp_path, perf=False))
    first.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lumos_mcp", "recover", "--mode", "sandbox"],
            env={**os.environ, **_env(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and f"pid {os.getpid()}" in done.stderr and StateLockedError.code in done.stderr
    finally:
        first.close()
