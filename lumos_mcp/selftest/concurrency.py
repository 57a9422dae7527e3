"""Concurrency: two agents applying conflicting changes at the same moment (exactly one may
hold the knob, the other must get ``conflict``), and many HTTP clients calling a real server
on loopback at once (no failures; p50 and p99 latency)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from lumos_mcp.api import tool_error
from lumos_mcp.selftest.common import Outcome
from lumos_mcp.selftest.intruders import HttpServer, http_server


# --------------------------------------------------------------------------- conflicting agents
def _bearer(server: HttpServer) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {server.token}"}, timeout=60)


def run_conflicts(server: HttpServer, out: Outcome, rounds: int = 10) -> None:
    """Two agents (two HTTP sessions) stage different values of one knob, then apply at once."""
    one_winner = 0
    loser_codes: dict[str, int] = {}

    async def apply(client: Client, txid: str, results: dict[str, Any], who: str) -> None:
        applied = await client.call_tool("apply", {"txid": txid})
        error = tool_error(applied)
        results[who] = (txid, None if not applied.is_error else error.code if error else "untyped")

    async def stage(client: Client, value: int) -> str:
        staged = await client.call_tool("stage_sched_params", {"changes": {"vm.swappiness": value}})
        data = staged.structured_content or {}
        if staged.is_error or not data.get("allowed"):
            raise RuntimeError(f"stage refused: {data}")
        txid: str = data["txid"]
        return txid

    async def main() -> None:
        nonlocal one_winner
        with anyio.fail_after(120):
            ha, hb = _bearer(server), _bearer(server)
            async with ha, hb:
                a_cm = Client(streamable_http_client(server.url, http_client=ha))
                b_cm = Client(streamable_http_client(server.url, http_client=hb))
                async with a_cm as a, b_cm as b:
                    for r in range(rounds):
                        ta, tb = await stage(a, 20 + r % 30), await stage(b, 70 + r % 30)
                        results: dict[str, Any] = {}
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(apply, a, ta, results, "a")
                            tg.start_soon(apply, b, tb, results, "b")
                        winners = [w for w, (_, code) in results.items() if code is None]
                        losers = [code for _, code in results.values() if code is not None]
                        if len(winners) == 1 and losers == ["conflict"]:
                            one_winner += 1
                        else:
                            out.fail(f"conflict round {r}: winners {winners}, loser codes {losers}")
                        for code in losers:
                            loser_codes[code] = loser_codes.get(code, 0) + 1
                        for txid, code in results.values():
                            if code is None:
                                await a.call_tool("revert", {"txid": txid})

    anyio.run(main)
    out.figures.update(conflict_rounds=rounds, conflict_exactly_one_winner=one_winner, conflict_loser_codes=loser_codes)


# --------------------------------------------------------------------------- HTTP load
async def _load(server: HttpServer, clients: int, calls: int) -> tuple[list[float], int, list[str]]:
    latencies: list[float] = []
    failures = 0
    samples: list[str] = []
    tools = [("get_status", {}), ("list_tunables", {"group": "vm"})]

    async def one_client(n: int) -> None:
        nonlocal failures
        http = _bearer(server)
        try:
            async with http, Client(streamable_http_client(server.url, http_client=http)) as client:
                for i in range(calls):
                    tool, args = tools[(n + i) % len(tools)]
                    t0 = time.perf_counter()
                    try:
                        result = await client.call_tool(tool, args)
                        ok = not result.is_error
                    except MCPError as e:
                        ok = False
                        if len(samples) < 5:
                            samples.append(f"{tool}: {e}")
                    latencies.append(time.perf_counter() - t0)
                    if not ok:
                        failures += 1
        except (MCPError, httpx2.HTTPError, OSError) as e:
            failures += calls  # the client never got going: count every call it owed
            if len(samples) < 5:
                samples.append(f"client {n}: {type(e).__name__}: {e}")

    with anyio.fail_after(max(120.0, clients * calls * 0.05)):
        async with anyio.create_task_group() as tg:
            for n in range(clients):
                tg.start_soon(one_client, n)
    return latencies, failures, samples


def run_load(server: HttpServer, out: Outcome, clients: int = 10, calls: int = 20) -> None:
    t0 = time.perf_counter()
    latencies, failures, samples = anyio.run(_load, server, clients, calls)
    wall = time.perf_counter() - t0
    for s in samples:
        out.fail(f"HTTP load: {s}")
    if failures:
        out.fail(f"HTTP load: {failures} of {clients * calls} calls failed")
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    out.figures.update(
        http_clients=clients,
        http_calls=clients * calls,
        http_completed=len(latencies),
        http_failures=failures,
        http_p50_ms=round(q[49] * 1000, 2),
        http_p99_ms=round(q[98] * 1000, 2),
        http_calls_per_s=round(len(latencies) / wall, 1) if wall > 0 else 0.0,
    )


def run(base: Path, rounds: int = 10, clients: int = 10, calls: int = 20) -> Outcome:
    out = Outcome("concurrency")
    base.mkdir(parents=True, exist_ok=True)
    with http_server(base) as server:
        run_conflicts(server, out, rounds)
        run_load(server, out, clients, calls)
    return out
