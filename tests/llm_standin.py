"""A scripted stand-in for an LLM endpoint on 127.0.0.1, speaking both wire formats the LLM agent
uses: OpenAI-compatible chat completions (``POST /v1/chat/completions``) and Anthropic's Messages
API (``POST /v1/messages``). It returns canned tool calls, reading the tool results in the
conversation it is sent (the txid of the staged change), so the whole loop can be driven without a
model. It proves the wiring, not a model's quality."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.http_helpers import free_port

TXID = re.compile(r'"txid":\s*"([^"]+)"')


@dataclass
class Script:
    """What the stand-in "model" does: call these tools in order (``{txid}`` in an argument is
    replaced by the txid found in the latest tool result), then answer ``final``."""

    steps: list[tuple[str, dict[str, Any]]]
    final: str = "Done: the change is committed."
    output_tokens: int = 7
    requests: list[dict[str, Any]] = field(default_factory=list)
    results: list[tuple[str, bool]] = field(default_factory=list)  # (text, is_error) as the model received them
    input_tokens: list[int] = field(default_factory=list)

    def next_call(self, results: list[tuple[str, bool]]) -> tuple[str, dict[str, Any]] | None:
        self.results = results
        if len(results) >= len(self.steps):
            return None
        name, args = self.steps[len(results)]
        found = [m.group(1) for text, _ in results for m in [TXID.search(text)] if m]
        filled = json.loads(json.dumps(args).replace("{txid}", found[-1] if found else "none"))
        return name, filled

    def count(self, body: dict[str, Any]) -> int:
        """Input tokens, as a real endpoint would report them (here: bytes / 4 of the messages)."""
        self.requests.append(body)
        n = len(json.dumps(body["messages"])) // 4
        self.input_tokens.append(n)
        return n


def _openai(script: Script) -> Any:
    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        n_in = script.count(body)
        results = [
            (m["content"].removeprefix("ERROR: "), m["content"].startswith("ERROR: "))
            for m in body["messages"]
            if m["role"] == "tool"
        ]
        step = script.next_call(results)
        turn = len(script.requests)
        if step is None:
            message: dict[str, Any] = {"role": "assistant", "content": script.final}
            finish = "stop"
        else:
            name, args = step
            call = {"id": f"call_{turn}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        return JSONResponse(
            {
                "id": f"chatcmpl-{turn}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": {
                    "prompt_tokens": n_in,
                    "completion_tokens": script.output_tokens,
                    "total_tokens": n_in + script.output_tokens,
                },
            }
        )

    return completions


def _anthropic(script: Script) -> Any:
    async def messages(request: Request) -> JSONResponse:
        body = await request.json()
        n_in = script.count(body)
        results = []
        for m in body["messages"]:
            if m["role"] == "user" and isinstance(m["content"], list):
                for block in m["content"]:
                    if block.get("type") == "tool_result":
                        content = block["content"]
                        text = content if isinstance(content, str) else "".join(c.get("text", "") for c in content)
                        results.append((text, bool(block.get("is_error"))))
        step = script.next_call(results)
        turn = len(script.requests)
        if step is None:
            content: list[dict[str, Any]] = [{"type": "text", "text": script.final}]
            stop = "end_turn"
        else:
            name, args = step
            content = [{"type": "tool_use", "id": f"toolu_{turn}", "name": name, "input": args}]
            stop = "tool_use"
        return JSONResponse(
            {
                "id": f"msg_{turn}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": n_in, "output_tokens": script.output_tokens},
            }
        )

    return messages


@contextmanager
def standin_endpoint(script: Script) -> Iterator[str]:
    """Serve ``script`` on a free loopback port; yield the base URL (``http://127.0.0.1:N``)."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", _openai(script), methods=["POST"]),
            Route("/v1/messages", _anthropic(script), methods=["POST"]),
        ]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        until = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > until or not thread.is_alive():
                raise AssertionError("the stand-in LLM endpoint did not start")
            time.sleep(0.02)  # uvicorn starts in its own thread: nothing to wait on but its flag
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
