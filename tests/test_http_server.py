"""HTTP that a slow client cannot stall (issue 19 item 6): a whole-request deadline, connection
limits per client and in total, sessions reaped when idle, one log line per burst of refusals.

The server runs in this process (uvicorn on 127.0.0.1, an ephemeral port) with small limits;
attackers connect from 127.0.0.2, which is loopback too but another client address.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer

from lumos_mcp.http_server import ConnectionGuard, HttpLimits, RepeatFilter, build_app, uvicorn_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ATTACKER = "127.0.0.2"
SMALL = HttpLimits(
    request_timeout_s=1.0,
    max_connections=40,
    max_connections_per_client=5,
    session_idle_timeout_s=1.0,
    max_sessions=50,
    log_every_s=0.3,
)


def _mcp() -> MCPServer:
    server = MCPServer("limits-test")

    @server.tool()
    def ping() -> str:
        """Answer pong."""
        return "pong"

    return server


@asynccontextmanager
async def running(limits: HttpLimits) -> AsyncIterator[tuple[int, ConnectionGuard]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn_config(build_app(_mcp(), "127.0.0.1", limits), "127.0.0.1", port, limits, "warning")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.02)
        try:
            yield port, config.http.guard  # type: ignore[union-attr]
        finally:
            server.should_exit = True


async def _ping(port: int) -> str:
    async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp")) as client:
        result = await client.call_tool("ping", {})
    assert result.structured_content is not None
    return str(result.structured_content["result"])


async def _half_open(port: int, source: str = ATTACKER) -> anyio.abc.SocketStream:
    stream = await anyio.connect_tcp("127.0.0.1", port, local_host=source)
    await stream.send(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
    return stream


async def _closed_by_server(stream: anyio.abc.SocketStream) -> bool:
    try:
        return await stream.receive() == b""  # more bytes: not closed yet
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
        return True


async def test_a_slowloris_request_is_cut_within_the_request_timeout_while_a_normal_client_is_served() -> None:
    async with running(SMALL) as (port, guard):
        slow = await _half_open(port)
        started = anyio.current_time()

        async def trickle() -> None:  # one header line every 0.2 s: an idle timer alone never fires
            for _ in range(50):
                await anyio.sleep(0.2)
                try:
                    await slow.send(b"X-Slow: 1\r\n")
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(trickle)
            with anyio.fail_after(5):
                assert await _ping(port) == "pong"
                assert await _closed_by_server(slow)
            tg.cancel_scope.cancel()
        await slow.aclose()
        assert anyio.current_time() - started < SMALL.request_timeout_s + 1.5
        assert guard.total <= 1  # the normal client's kept-alive connection at most


async def test_a_slow_second_request_on_a_kept_alive_connection_is_cut_too() -> None:
    async with running(SMALL) as (port, _guard):
        stream = await anyio.connect_tcp("127.0.0.1", port, local_host=ATTACKER)
        await stream.send(f"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        with anyio.fail_after(5):
            first = await stream.receive()
            assert first.startswith(b"HTTP/1.1 ")
            await stream.send(b"GET /nowhere HTTP/1.1\r\n")  # then nothing more
            sent = anyio.current_time()
            while not await _closed_by_server(stream):
                pass  # the rest of the first response, if any
        assert anyio.current_time() - sent < SMALL.request_timeout_s + 1.5
        await stream.aclose()


async def test_many_half_open_connections_from_one_client_do_not_starve_another() -> None:
    async with running(SMALL) as (port, guard):
        streams = [await _half_open(port) for _ in range(30)]
        with anyio.fail_after(5):
            refused = [s for s in streams[SMALL.max_connections_per_client :] if await _closed_by_server(s)]
            assert len(refused) == 30 - SMALL.max_connections_per_client
            assert guard.open[ATTACKER] == SMALL.max_connections_per_client
            assert await _ping(port) == "pong"
        for s in streams:
            await s.aclose()


async def test_refused_connections_are_logged_as_one_summary_without_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(SMALL) as (port, _guard):
        streams = [await _half_open(port) for _ in range(45)]
        with anyio.fail_after(5):
            for s in streams[SMALL.max_connections_per_client :]:
                assert await _closed_by_server(s)
            while not any(r.name == "lumos_mcp.http" for r in caplog.records):
                await anyio.sleep(0.05)
        for s in streams:
            await s.aclose()
    summaries = [r for r in caplog.records if r.name == "lumos_mcp.http"]
    assert len(summaries) == 1
    assert "40 over 5 per client" in summaries[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


async def test_an_idle_legacy_session_is_reaped_after_the_idle_timeout() -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with running(SMALL) as (port, _guard), httpx2.AsyncClient(timeout=5) as http:
        url = f"http://127.0.0.1:{port}/mcp"
        opened = await http.post(url, json=init, headers=headers)
        session = opened.headers["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        alive = await http.post(url, json=ping, headers={**headers, "mcp-session-id": session})
        assert alive.status_code == 200
        await anyio.sleep(SMALL.session_idle_timeout_s * 2.5)  # what is tested is the idle time itself
        gone = await http.post(url, json=ping, headers={**headers, "mcp-session-id": session})
        assert gone.status_code == 404


def test_the_guard_counts_per_client_and_in_total() -> None:
    guard = ConnectionGuard(HttpLimits(max_connections=3, max_connections_per_client=2))
    assert [guard.admit("a"), guard.admit("a"), guard.admit("a")] == [None, None, "per_client"]
    assert [guard.admit("b"), guard.admit("c")] == [None, "total"]
    guard.release("a")
    assert guard.admit("c") is None
    assert guard.total == 3 and dict(guard.open) == {"a": 1, "b": 1, "c": 1}


def test_the_repeat_filter_lets_one_message_through_per_window_and_counts_the_rest() -> None:
    now = [0.0]
    repeat = RepeatFilter(10.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    assert repeat.filter(record("socket.accept() out of system resource"))
    assert not any(repeat.filter(record("socket.accept() out of system resource")) for _ in range(99))
    assert repeat.filter(record("another message"))
    now[0] = 10.5
    passed = record("socket.accept() out of system resource")
    assert repeat.filter(passed)
    assert "99 more like this" in passed.getMessage()


def test_the_repeat_filter_remembers_a_bounded_number_of_distinct_messages() -> None:
    now = [0.0]
    repeat = RepeatFilter(10.0, clock=lambda: now[0])
    for n in range(5000):
        now[0] = n * 0.001
        record = logging.LogRecord("mcp", logging.INFO, __file__, 1, f"unknown session {n}", None, None)
        assert repeat.filter(record)
    assert len(repeat._last) <= RepeatFilter.MAX_KEYS
