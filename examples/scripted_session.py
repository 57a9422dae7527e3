"""A scripted agent session over stdio: start `lumos-mcp serve` (sandbox), then list, stage,
apply, measure and commit through MCP tools, exactly as an LLM client would.

Run it with the Python lumos-mcp is installed in (it needs the `mcp` and `anyio` packages):

    .venv/bin/python examples/scripted_session.py   # a throw-away state directory, removed at the end
    LUMOS_STATE_DIR=/tmp/lumos-demo .venv/bin/python examples/scripted_session.py   # that one, kept

Its client has no elicitation, so a change the policy wants approved waits for an operator
(examples/operator_approval.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent


async def main(approval_wait_s: float = 60.0) -> None:
    given = os.environ.get("LUMOS_STATE_DIR")
    if given:
        await session(given, approval_wait_s)
    else:
        with tempfile.TemporaryDirectory(prefix="lumos-session-") as state:
            await session(state, approval_wait_s)


async def session(state: str, approval_wait_s: float) -> None:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lumos_mcp", "serve", "--mode", "sandbox"],
        env={"LUMOS_STATE_DIR": state, "PYTHONPATH": os.getcwd()},
    )
    async with Client(server) as client:
        tunables = (await client.call_tool("list_tunables", {"only_allowed": True})).structured_content or {}
        usable = [t for t in tunables["tunables"] if t["state"] == "available"]
        print(f"{len(usable)} knobs the policy lets change on this kernel; e.g.:")
        for t in usable[:5]:
            print(f"  {t['id']:35} = {t['value']!r:12} {t['state']}")

        current = next((t["value"] for t in usable if t["id"] == KNOB), None)
        if not isinstance(current, int):
            print(f"{KNOB} is not available here; nothing to show")
            return
        target = approval_sized_step(current)
        staged = data(await client.call_tool("stage_sched_params", {"changes": {KNOB: target}}))
        print("staged:", staged["diff"], "allowed:", staged["allowed"], "approval:", staged["approval_required"])
        if not staged["allowed"]:
            print("denied:", [d["message"] for d in staged["denials"]])
            return
        if staged["approval_required"]:
            # No elicitation in this client: an operator must approve from another terminal.
            print(
                f"waiting up to {approval_wait_s:g} s for an operator: in another terminal run "
                "`lumos-mcp approvals list`, then `lumos-mcp approvals approve <id>`",
                flush=True,
            )
            answer = data(
                await client.call_tool("request_approval", {"txid": staged["txid"], "wait_s": approval_wait_s})
            )
            print("approval:", answer.get("status"), "-", answer.get("next"))
        applied = await client.call_tool("apply", {"txid": staged["txid"]})
        if applied.is_error:
            print("apply refused:", error_of(applied))
            return
        print("applied; auto-revert in", data(applied)["deadline_in_s"], "s")
        sig = data(await client.call_tool("read_telemetry", {"window_s": 3, "fresh": True}))
        psi = ((sig["signature"].get("psi") or {}).get("cpu") or {}).get("some") or {}
        print("cpu pressure avg10 %:", psi.get("avg10_pct"))
        committed = data(await client.call_tool("commit", {"txid": staged["txid"]}))
        print("committed:", committed["values"], f"(state dir {state})")


KNOB = "vm.dirty_background_ratio"


def approval_sized_step(current: int) -> int:
    """A new value the shipped latency policy allows but wants approved: a step above 25% (its
    approval threshold) and at most 50% (its step limit), inside its bounds 1..15."""
    for new in sorted(range(1, 16), key=lambda v: abs(v - current)):
        if 0.25 < abs(new - current) / current <= 0.5:
            return new
    return max(1, current // 2)


def data(result: CallToolResult) -> dict[str, Any]:
    """A tool result's structured content."""
    return result.structured_content or {}


def error_of(result: CallToolResult) -> object:
    """An error result's ``{code, message, fields}``: from the structured content, else the text."""
    if result.structured_content and "error" in result.structured_content:
        return result.structured_content["error"]
    text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
    try:
        return json.loads(text)
    except ValueError:
        return text


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="a scripted agent session over stdio (sandbox)")
    cli.add_argument("--approval-wait", type=float, default=60.0, help="seconds to wait for an operator (default 60)")
    anyio.run(main, cli.parse_args().approval_wait)
