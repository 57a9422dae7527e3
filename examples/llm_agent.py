"""An LLM agent driving lumos-mcp over stdio (sandbox by default), on any model: Anthropic's API
or any OpenAI-compatible chat-completions endpoint with tool calls (ollama, vLLM, llama.cpp's server).

The model sees the server's tools with their schemas; the server enforces policy, approvals and
auto-revert. Needs the optional extra: pip install 'lumos-mcp[llm]'. Configuration (see
lumos_mcp/agents/llm.py):

    ANTHROPIC_API_KEY=... python examples/llm_agent.py [--mode sandbox] [--turns 12]
    LUMOS_LLM_BASE_URL=http://127.0.0.1:11434/v1 LUMOS_LLM_MODEL=qwen3:8b python examples/llm_agent.py

It prints each tool call, then the session's model calls, tokens and (with LUMOS_LLM_PRICE_IN and
LUMOS_LLM_PRICE_OUT, USD per million tokens) its cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import anyio
from mcp import Client, StdioServerParameters

from lumos_mcp.agents.llm import LLMConfig, LLMUnavailable, run_session


async def main(mode: str, turns: int) -> int:
    try:
        config = LLMConfig.from_env()
    except LLMUnavailable as e:
        print(f"no LLM: {e}. Skipping the LLM agent (the built-in one is `lumos-mcp tune`).")
        return 0
    state = os.environ.get("LUMOS_STATE_DIR") or tempfile.mkdtemp(prefix="lumos-llm-")
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lumos_mcp", "serve", "--mode", mode],
        env={"LUMOS_STATE_DIR": state, "PYTHONPATH": os.getcwd(), "PATH": os.environ.get("PATH", "")},
    )
    print(f"model: {config.describe()}")
    async with Client(server) as client:
        try:
            report = await run_session(client, config, turns=turns, on_event=print)
        except LLMUnavailable as e:
            print(f"no LLM: {e}")
            return 1
    print(f"session: {report.turns} turns, {len(report.tool_calls)} tool calls; {report.usage.line()}")
    print(f"audit log: {state}/audit.jsonl  (lumos-mcp audit verify --state-dir {state})")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["observe", "sandbox", "live"], default="sandbox")
    p.add_argument("--turns", type=int, default=12)
    args = p.parse_args()
    sys.exit(anyio.run(main, args.mode, args.turns))
