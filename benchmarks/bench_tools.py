"""MCP tool-call latency of lumos-mcp, in memory and over stdio, as ratios to a no-op call.

Method: a hand-rolled loop, not pyperf. pyperf's Runner re-executes the script in worker
processes and times a synchronous function; an MCP client is an async context with a
server (and, over stdio, a subprocess) behind it, so each worker would pay the whole
client lifecycle. Instead one client per server is opened once, every operation is warmed
up, and then the operations are measured in interleaved rounds (``--rounds``, each doing
a slice of every operation's calls), so a burst of load from a neighbour falls on all
operations alike. Each call is timed with ``time.perf_counter_ns`` around
``Client.call_tool``; p50 and p99 are nearest-rank percentiles of those times.

Transports:
  memory  ``mcp.Client(build_server(service))`` over a sandbox-mode ``Service`` reading the
          real host, plus a ``noop`` tool registered on that server object only.
  stdio   ``python -m lumos_mcp serve --mode sandbox --state-dir <tmp> --policy
          benchmarks/policy-bench.toml`` as a subprocess (``LUMOS_STATE_DIR`` set too), and,
          for the baseline, ``benchmarks/noop_server.py``: a minimal MCP server with only a
          ``noop`` tool, started the same way. The product has no noop tool.

Both lumos servers run as ``lumos-mcp serve`` does: telemetry sampling at 1 Hz in the
background and ``perf stat`` when perf is installed.

Run from the worktree root: ``python -m benchmarks.bench_tools`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from benchmarks.noop_server import NOOP_ANNOTATIONS, noop
from benchmarks.report import ROOT, command_line, conditions, percentile, table, write_section
from lumos_mcp.server import build_server
from lumos_mcp.service import Service, ServiceConfig

POLICY = ROOT / "benchmarks" / "policy-bench.toml"
NOOP_SERVER = ROOT / "benchmarks" / "noop_server.py"
SECTION = "MCP tool-call latency"
# Two value sets, alternated, so every cycle really writes both knobs; both are inside
# policy-bench.toml's bounds (and inside the shipped latency policy's for dirty_background_ratio).
VALUES = ({"vm.swappiness": 50, "vm.dirty_background_ratio": 8}, {"vm.swappiness": 40, "vm.dirty_background_ratio": 6})
CYCLE_ROWS = ("stage_sched_params", "apply", "commit", "stage+apply+commit")
UNVALIDATED = "read_telemetry, client output check off"
ROWS = ("noop", "get_status", "read_telemetry", UNVALIDATED, *CYCLE_ROWS)
TRANSPORTS = ("memory", "stdio")


class BenchError(RuntimeError):
    """A tool call failed during the benchmark: the figures would be meaningless."""


@dataclass(frozen=True)
class Op:
    """An operation: which client it uses and a coroutine returning {row: nanoseconds}."""

    name: str
    target: str
    run: Callable[[Client, int], Awaitable[dict[str, int]]]


async def timed_call(client: Client, tool: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One ``call_tool``, timed; raises BenchError on an error result."""
    start = time.perf_counter_ns()
    result = await client.call_tool(tool, args)
    elapsed = time.perf_counter_ns() - start
    if result.is_error:
        raise BenchError(f"{tool}({args}) failed: {result.content}")
    return elapsed, result.structured_content or {}


def make_ops(window_s: float) -> list[Op]:
    async def call_noop(client: Client, i: int) -> dict[str, int]:
        return {"noop": (await timed_call(client, "noop", {}))[0]}

    async def get_status(client: Client, i: int) -> dict[str, int]:
        return {"get_status": (await timed_call(client, "get_status", {}))[0]}

    async def read_telemetry(client: Client, i: int) -> dict[str, int]:
        return {"read_telemetry": (await timed_call(client, "read_telemetry", {"window_s": window_s}))[0]}

    async def read_telemetry_unvalidated(client: Client, i: int) -> dict[str, int]:
        # The SDK client checks every structured result against the tool's output schema
        # (jsonschema); shadowing that method for one call shows what the check costs.
        session = client.session

        async def skip(name: str, result: Any) -> None:
            return None

        session.validate_tool_result = skip  # type: ignore[method-assign]
        try:
            return {UNVALIDATED: (await timed_call(client, "read_telemetry", {"window_s": window_s}))[0]}
        finally:
            del session.validate_tool_result

    async def cycle(client: Client, i: int) -> dict[str, int]:
        t_stage, staged = await timed_call(client, "stage_sched_params", {"changes": VALUES[i % 2]})
        if not staged["allowed"] or staged["approval_required"]:
            raise BenchError(f"the bench policy should allow this change without approval: {staged}")
        t_apply, _ = await timed_call(client, "apply", {"txid": staged["txid"]})
        t_commit, _ = await timed_call(client, "commit", {"txid": staged["txid"]})
        return {
            "stage_sched_params": t_stage,
            "apply": t_apply,
            "commit": t_commit,
            "stage+apply+commit": t_stage + t_apply + t_commit,
        }

    return [
        Op("noop", "noop", call_noop),
        Op("get_status", "lumos", get_status),
        Op("read_telemetry", "lumos", read_telemetry),
        Op(UNVALIDATED, "lumos", read_telemetry_unvalidated),
        Op("cycle", "lumos", cycle),
    ]


async def warm_telemetry(client: Client, window_s: float) -> None:
    """Wait until read_telemetry answers from the buffer, trends included (two windows covered)."""
    with anyio.fail_after(30 + 4 * window_s):
        while True:
            _, data = await timed_call(client, "read_telemetry", {"window_s": window_s})
            if data.get("trends") is not None:
                return
            await anyio.sleep(0.25)


async def measure(
    clients: dict[str, Client], ops: Sequence[Op], calls: int, warmup: int, rounds: int
) -> dict[str, list[int]]:
    """Warm every operation up, then run ``calls`` of each in ``rounds`` interleaved slices."""
    done = dict.fromkeys((op.name for op in ops), 0)
    for op in ops:
        for _ in range(warmup):
            await op.run(clients[op.target], done[op.name])
            done[op.name] += 1
    times: dict[str, list[int]] = {}
    for r in range(rounds):
        for op in ops:
            share = calls // rounds + (1 if r < calls % rounds else 0)
            for _ in range(share):
                for row, ns in (await op.run(clients[op.target], done[op.name])).items():
                    times.setdefault(row, []).append(ns)
                done[op.name] += 1
    return times


@asynccontextmanager
async def memory_clients(state_dir: Path, interval_s: float = 1.0) -> AsyncIterator[dict[str, Client]]:
    config = ServiceConfig(mode="sandbox", state_dir=state_dir, policy=POLICY, telemetry_interval_s=interval_s)
    service = Service(config)
    service.start()
    try:
        server = build_server(service)
        server.add_tool(noop, name="noop", annotations=NOOP_ANNOTATIONS)
        async with Client(server) as client:
            yield {"noop": client, "lumos": client}
    finally:
        service.close()


@asynccontextmanager
async def stdio_clients(state_dir: Path) -> AsyncIterator[dict[str, Client]]:
    env = {"LUMOS_STATE_DIR": str(state_dir), "PYTHONPATH": str(ROOT)}
    lumos = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lumos_mcp", "serve", "--mode", "sandbox", "--state-dir", str(state_dir), "--policy", str(POLICY)],
        cwd=str(ROOT),
        env=env,
    )
    baseline = StdioServerParameters(command=sys.executable, args=[str(NOOP_SERVER)], cwd=str(ROOT), env=env)
    async with AsyncExitStack() as stack:
        yield {
            "lumos": await stack.enter_async_context(Client(lumos)),
            "noop": await stack.enter_async_context(Client(baseline)),
        }


async def run_transport(
    transport: str,
    calls: int,
    warmup: int,
    rounds: int,
    window_s: float,
    only: Sequence[str] | None = None,
    interval_s: float = 1.0,
) -> dict[str, list[int]]:
    """Time every operation (or those named in ``only``) on one transport.

    ``interval_s`` is the telemetry interval of the in-memory server; the stdio server
    samples at ``lumos-mcp serve``'s 1 s.
    """
    ops = [op for op in make_ops(window_s) if only is None or op.name in only]
    with tempfile.TemporaryDirectory(prefix=f"lumos-bench-{transport}-") as tmp:
        opened = memory_clients(Path(tmp), interval_s) if transport == "memory" else stdio_clients(Path(tmp))
        async with opened as clients:
            await warm_telemetry(clients["lumos"], window_s)
            return await measure(clients, ops, calls, warmup, rounds)


def rows_for(transport: str, times: dict[str, list[int]]) -> list[list[str]]:
    """Table rows (see HEADER) for the operations measured, in ROWS order."""
    base = times["noop"]
    base50, base99 = percentile(base, 50), percentile(base, 99)
    out = []
    for row in (r for r in ROWS if r in times):
        ns = times[row]
        p50, p99 = percentile(ns, 50), percentile(ns, 99)
        out.append(
            [
                row,
                transport,
                str(len(ns)),
                f"{p50 / 1e6:.3f}",
                f"{p99 / 1e6:.3f}",
                f"{p50 / base50:.1f}",
                f"{p99 / base99:.1f}",
            ]
        )
    return out


HEADER = ("operation", "transport", "calls", "p50 ms", "p99 ms", "p50 / noop p50", "p99 / noop p99")


def render(results: dict[str, dict[str, list[int]]], argv: Sequence[str], args: argparse.Namespace) -> str:
    rows = [r for transport, times in results.items() for r in rows_for(transport, times)]
    command = command_line("benchmarks.bench_tools", argv)
    return "\n\n".join(
        [
            f"Command (from the worktree root):\n\n```\n{command}\n```",
            conditions(),
            f"- Settings: {args.calls} timed calls per operation and transport after {args.warmup} warm-up "
            f"calls, in {args.rounds} interleaved rounds; read_telemetry with window_s={args.window_s:g} "
            "once the buffer covers two windows (so trends are computed too); stage+apply+commit changes "
            "vm.swappiness and vm.dirty_background_ratio together, alternating between two value sets, "
            "under benchmarks/policy-bench.toml (no approval, no cooldown). Both lumos servers sample "
            "telemetry at 1 Hz with perf stat in the background, as `lumos-mcp serve` does.",
            "- Method: time.perf_counter_ns around Client.call_tool, hand-rolled (pyperf's worker "
            "processes would each pay the MCP client and server start-up); nearest-rank percentiles. "
            'Baseline `noop` is a plain `def` tool returning "ok": in memory it is registered on the '
            "benchmark's own server object; over stdio it lives in benchmarks/noop_server.py, a separate "
            "minimal MCP server started the same way. Ratios divide by the noop of the same transport, "
            "measured in the same run. Each of the three stage/apply/commit rows is one tool call; "
            "`stage+apply+commit` is their sum per cycle. The row `read_telemetry, client output check off` "
            "is the same call with the SDK client's jsonschema check of structuredContent against the "
            "tool's outputSchema (ClientSession.validate_tool_result) shadowed for that call.",
            table(HEADER, rows),
        ]
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--calls", type=int, default=500, help="timed calls per operation and transport (default 500)")
    p.add_argument("--warmup", type=int, default=50, help="untimed calls per operation first (default 50)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the calls are split into (default 10)")
    p.add_argument("--window-s", type=float, default=2.0, help="read_telemetry window in seconds (default 2)")
    p.add_argument("--transport", choices=TRANSPORTS, action="append", help="only this transport (repeatable)")
    p.add_argument("--quick", action="store_true", help="a handful of calls, no doc update (smoke test)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="a markdown file whose section this run rewrites, e.g. docs/benchmarks.md (default: print only)",
    )
    p.add_argument("--no-doc", action="store_true", help=argparse.SUPPRESS)  # the default now: print only
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.rounds = 6, 2, 2
    results = {}
    for transport in args.transport or TRANSPORTS:
        results[transport] = anyio.run(run_transport, transport, args.calls, args.warmup, args.rounds, args.window_s)
    body = render(results, argv, args)
    print(f"## {SECTION}\n\n{body}")
    if args.out is not None and not (args.quick or args.no_doc):
        write_section(SECTION, body, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
