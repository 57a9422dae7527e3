"""What lumos-mcp costs an LLM in tokens: per tool answer, per tuning cycle, per 30-cycle session.

Tokenizer: OpenAI's ``o200k_base`` BPE from the ``bpe-openai`` package (the ``bench`` extra),
whose vocabulary ships inside the wheel, so it works offline (``tiktoken`` downloads its
vocabulary at first use, which fails on these machines). Claude's tokenizer is not published;
o200k is a proxy, and the bytes per token of each figure are printed beside it. Without
``bpe-openai`` the benchmark falls back to an estimate of 4 bytes per token and says so.

What is counted: the text a model reads, i.e. each tool answer's ``content`` text (the server
mirrors its structured result there as compact JSON), and the tool definitions as a model is
given them (name, description, input schema; output schemas counted apart).

The scripted agent runs an in-memory server (sandbox mode, benchmarks/policy-bench.toml,
telemetry of the real host at 1 Hz). One cycle: observe (read_telemetry, list_tunables
only_allowed), stage_sched_params, apply, measure (read_telemetry), then commit on even cycles and
revert on odd ones. The session total is the input tokens of a model that makes one turn per
tool call and re-reads its context every turn: definitions + every earlier answer (no window),
or definitions + the answers of the last ``--window-cycles`` cycles (sliding window).
Both agents, the default (``detail`` summary) and one asking ``detail="full"``, run in one process.

Run from the worktree root: ``python -m benchmarks.bench_tokens`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from benchmarks.bench_tools import POLICY, VALUES, BenchError, warm_telemetry
from benchmarks.report import command_line, conditions, table, write_section
from lumos_mcp.server import build_server
from lumos_mcp.service import Service, ServiceConfig

SECTION = "Tokens an LLM pays"
BYTES_PER_TOKEN_ESTIMATE = 4.0


@dataclass(frozen=True)
class Counter:
    name: str
    count: Callable[[str], int]


def tokenizer() -> Counter:
    """o200k_base from bpe-openai (offline), else the bytes-per-token estimate."""
    try:
        with warnings.catch_warnings():
            # bpe-openai 0.1.4 reads its vocabulary with importlib.resources.open_binary (deprecated)
            warnings.simplefilter("ignore", DeprecationWarning)
            import bpe_openai

            encoding = bpe_openai.get_encoding("o200k_base")
    except ImportError:
        return Counter(
            f"estimate: {BYTES_PER_TOKEN_ESTIMATE:g} bytes per token (bpe-openai not installed)",
            lambda text: round(len(text.encode()) / BYTES_PER_TOKEN_ESTIMATE),
        )
    return Counter("o200k_base (bpe-openai, vocabulary in the wheel)", lambda text: len(encoding.encode(text)))


def answer_text(result: Any) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


async def call(client: Client, tool: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise BenchError(f"{tool}({args}) failed: {answer_text(result)}")
    return answer_text(result), result.structured_content or {}


@dataclass
class Session:
    """One scripted agent's answers, as (cycle, tool, text)."""

    detail: str
    calls: list[tuple[int, str, str]] = field(default_factory=list)


async def scripted_cycles(client: Client, detail: str, cycles: int, window_s: float) -> Session:
    session = Session(detail)
    extra = {} if detail == "summary" else {"detail": "full"}
    for n in range(cycles):

        async def step(tool: str, args: dict[str, Any], n: int = n) -> dict[str, Any]:
            text, data = await call(client, tool, args)
            session.calls.append((n, tool, text))
            return data

        await step("read_telemetry", {"window_s": window_s, **extra})
        await step("list_tunables", {"only_allowed": True, **({} if detail == "summary" else {"detail": True})})
        staged = await step("stage_sched_params", {"changes": VALUES[n % 2]})
        if not staged["allowed"] or staged["approval_required"]:
            raise BenchError(f"the bench policy should allow this change without approval: {staged}")
        await step("apply", {"txid": staged["txid"]})
        await step("read_telemetry", {"window_s": window_s, **extra})
        await step("commit" if n % 2 == 0 else "revert", {"txid": staged["txid"]})
    return session


def session_input_tokens(tokens: list[tuple[int, int]], definitions: int, window_cycles: int | None) -> tuple[int, int]:
    """(total input tokens over the session, largest context) for one turn per tool answer."""
    total = peak = 0
    for i, (cycle, _) in enumerate(tokens):
        context = definitions + sum(t for c, t in tokens[: i + 1] if window_cycles is None or c > cycle - window_cycles)
        total += context
        peak = max(peak, context)
    return total, peak


async def run(cycles: int, window_s: float, window_cycles: int) -> dict[str, Any]:
    counter = tokenizer()
    out: dict[str, Any] = {"tokenizer": counter.name}
    with tempfile.TemporaryDirectory(prefix="lumos-bench-tokens-") as tmp:
        config = ServiceConfig(mode="sandbox", state_dir=Path(tmp), policy=POLICY, telemetry_interval_s=1.0)
        service = Service(config)
        service.start()
        try:
            async with Client(build_server(service)) as client:
                await warm_telemetry(client, window_s)
                tools = (await client.list_tools()).tools
                model_view = [
                    {"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in tools
                ]
                out["definitions"] = counter.count(json.dumps(model_view))
                out["output_schemas"] = counter.count(json.dumps([t.output_schema for t in tools]))
                answers: dict[str, str] = {}
                for label, tool, args in (
                    ("read_telemetry", "read_telemetry", {"window_s": window_s}),
                    ('read_telemetry detail="full"', "read_telemetry", {"window_s": window_s, "detail": "full"}),
                    ("list_tunables", "list_tunables", {}),
                    ("list_tunables detail=true", "list_tunables", {"detail": True}),
                    ("get_status", "get_status", {}),
                ):
                    answers[label] = (await call(client, tool, args))[0]
                out["answers"] = {k: (counter.count(v), len(v.encode())) for k, v in answers.items()}
                out["sessions"] = {}
                for detail in ("summary", "full"):
                    session = await scripted_cycles(client, detail, cycles, window_s)
                    tokens = [(c, counter.count(text)) for c, _, text in session.calls]
                    per_cycle = [sum(t for c, t in tokens if c == n) for n in range(cycles)]
                    out["sessions"][detail] = {
                        "per_tool": {
                            tool: max(counter.count(text) for _, t, text in session.calls if t == tool)
                            for tool in dict.fromkeys(t for _, t, _ in session.calls)
                        },
                        "cycle_max": max(per_cycle),
                        "cycle_mean": sum(per_cycle) / len(per_cycle),
                        "no_window": session_input_tokens(tokens, out["definitions"], None),
                        "window": session_input_tokens(tokens, out["definitions"], window_cycles),
                    }
        finally:
            service.close()
    return out


def render(result: dict[str, Any], argv: Sequence[str], args: argparse.Namespace) -> str:
    answers = [
        [f"`{label}`", f"{tokens:,}", f"{size:,}", f"{size / tokens:.1f}"]
        for label, (tokens, size) in result["answers"].items()
    ]
    answers.append(["tool definitions (name, description, input schema)", f"{result['definitions']:,}", "", ""])
    answers.append(["output schemas (not usually shown to a model)", f"{result['output_schemas']:,}", "", ""])
    s, f = result["sessions"]["summary"], result["sessions"]["full"]
    cycle_rows = [[f"`{tool}`", str(s["per_tool"][tool]), str(f["per_tool"][tool])] for tool in s["per_tool"]]
    cycle_rows.append(["one cycle (largest)", f"{s['cycle_max']:,}", f"{f['cycle_max']:,}"])
    cycle_rows.append(["one cycle (mean)", f"{s['cycle_mean']:,.0f}", f"{f['cycle_mean']:,.0f}"])
    for key, label in (("no_window", "no window"), ("window", f"last {args.window_cycles} cycles kept")):
        cycle_rows.append(
            [
                f"{args.cycles}-cycle session input, {label} (largest context)",
                f"{s[key][0]:,} ({s[key][1]:,})",
                f"{f[key][0]:,} ({f[key][1]:,})",
            ]
        )
    command = command_line("benchmarks.bench_tokens", argv)
    return "\n\n".join(
        [
            f"Command (from the worktree root):\n\n```\n{command}\n```",
            conditions(),
            f"- Tokenizer: {result['tokenizer']}. Counted: each answer's text content (the structured "
            "result as compact JSON), and the tool definitions once per turn.",
            f"- read_telemetry window_s={args.window_s:g} with trends (the buffer covers two windows).",
            table(("answer", "tokens", "bytes", "bytes per token"), answers),
            "A cycle: read_telemetry, list_tunables(only_allowed), stage_sched_params, apply, read_telemetry, "
            "commit (even cycles) or revert (odd). Session input: one model turn per tool answer, each "
            "re-reading the definitions and the answers kept so far.",
            table(("tokens of tool output", "default (summary)", 'detail="full"'), cycle_rows),
        ]
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--cycles", type=int, default=30, help="tuning cycles per scripted agent (default 30)")
    p.add_argument("--window-s", type=float, default=2.0, help="read_telemetry window in seconds (default 2)")
    p.add_argument("--window-cycles", type=int, default=5, help="cycles a sliding context window keeps (default 5)")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    p.add_argument("--out", type=Path, default=None, help="a markdown file whose section this run rewrites")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    result = anyio.run(run, args.cycles, args.window_s, args.window_cycles)
    body = render(result, argv, args)
    print(f"## {SECTION}\n\n{body}")
    if args.json:
        print(json.dumps(result, indent=2))
    if args.out is not None:
        write_section(SECTION, body, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
