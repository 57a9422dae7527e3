"""A scripted agent session over stdio: start `lumos-mcp serve` (sandbox), then list, stage,
apply, measure and commit through MCP tools, exactly as an LLM client would.

    python examples/scripted_session.py            # uses a throw-away state directory
"""

from __future__ import annotations

import os
import sys
import tempfile

import anyio
from mcp import Client, StdioServerParameters


async def main() -> None:
    state = tempfile.mkdtemp(prefix="lumos-session-")
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

        staged = (
            await client.call_tool("stage_sched_params", {"changes": {"vm.dirty_background_ratio": 5}})
        ).structured_content or {}
        print("staged:", staged["diff"], "allowed:", staged["allowed"], "approval:", staged["approval_required"])
        if not staged["allowed"]:
            print("denied:", [d["message"] for d in staged["denials"]])
            return
        if staged["approval_required"]:
            # No elicitation in this client: an operator must approve from another terminal.
            answer = await client.call_tool("request_approval", {"txid": staged["txid"], "wait_s": 60})
            print(
                "approval:",
                (answer.structured_content or {}).get("status"),
                "-",
                (answer.structured_content or {}).get("next"),
            )
        applied = await client.call_tool("apply", {"txid": staged["txid"]})
        if applied.is_error:
            print("apply refused:", "".join(c.text for c in applied.content if c.type == "text"))
            return
        print("applied; auto-revert in", (applied.structured_content or {})["deadline_in_s"], "s")
        sig = (await client.call_tool("read_telemetry", {"window_s": 3, "fresh": True})).structured_content or {}
        psi = ((sig["signature"].get("psi") or {}).get("cpu") or {}).get("some") or {}
        print("cpu pressure avg10 %:", psi.get("avg10_pct"))
        committed = (await client.call_tool("commit", {"txid": staged["txid"]})).structured_content or {}
        print("committed:", committed["values"], f"(state dir {state})")


if __name__ == "__main__":
    anyio.run(main)
