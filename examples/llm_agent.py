"""An LLM agent loop on the Anthropic SDK, driving lumos-mcp over stdio (sandbox by default).

Runs only when ANTHROPIC_API_KEY is set (pip install 'lumos-mcp[llm]'). The model sees the
server's tools with their schemas; the server enforces policy, approvals and auto-revert.

    ANTHROPIC_API_KEY=... python examples/llm_agent.py [--mode sandbox] [--turns 12]
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

MODEL = os.environ.get("LUMOS_LLM_MODEL", "claude-sonnet-4-5")


async def main(mode: str, turns: int) -> int:
    if not os.environ.get("ANTHROPIC_API_KEY"):
        print("ANTHROPIC_API_KEY is not set: skipping the LLM agent (the built-in one is `lumos-mcp tune`).")
        return 0
    import anthropic  # the optional 'llm' extra

    llm = anthropic.AsyncAnthropic()
    state = os.environ.get("LUMOS_STATE_DIR") or tempfile.mkdtemp(prefix="lumos-llm-")
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lumos_mcp", "serve", "--mode", mode],
        env={"LUMOS_STATE_DIR": state, "PYTHONPATH": os.getcwd()},
    )
    async with Client(server) as client:
        tools = [
            {"name": t.name, "description": t.description or "", "input_schema": t.input_schema}
            for t in (await client.list_tools()).tools
        ]
        prompt = await client.get_prompt("tune-latency", {})
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt.messages[0].content.text}]  # type: ignore[union-attr]
        for _ in range(turns):
            reply = await llm.messages.create(model=MODEL, max_tokens=2048, tools=tools, messages=messages)
            messages.append({"role": "assistant", "content": reply.content})
            for block in reply.content:
                if block.type == "text":
                    print("agent:", block.text)
            calls = [b for b in reply.content if b.type == "tool_use"]
            if not calls:
                break
            results = []
            for call in calls:
                result = await client.call_tool(call.name, call.input)
                text = "".join(c.text for c in result.content if c.type == "text")  # JSON, error or not
                print(f"tool {call.name}({json.dumps(call.input)[:120]}) -> {text[:160]}")
                results.append(
                    {"type": "tool_result", "tool_use_id": call.id, "content": text, "is_error": bool(result.is_error)}
                )
            messages.append({"role": "user", "content": results})
    print(f"audit log: {state}/audit.jsonl  (lumos-mcp audit verify --state-dir {state})")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", choices=["observe", "sandbox", "live"], default="sandbox")
    p.add_argument("--turns", type=int, default=12)
    args = p.parse_args()
    sys.exit(anyio.run(main, args.mode, args.turns))
