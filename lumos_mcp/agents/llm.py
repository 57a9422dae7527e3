"""An LLM agent for any model: Anthropic's Messages API or any OpenAI-compatible chat-completions
endpoint with tool calls (OpenAI itself, and local servers: ollama, vLLM, llama.cpp's server).

The model sees the MCP server's tools with their input schemas and calls them; the server enforces
policy, approvals and auto-revert, whatever the model says. `LLMConfig.from_env()` chooses the
provider; every session counts its tokens (as the endpoint reports them) and, when prices are
configured, its cost.

    LUMOS_LLM_PROVIDER   anthropic | openai   (default: anthropic when ANTHROPIC_API_KEY is set,
                                               openai when LUMOS_LLM_BASE_URL or OPENAI_API_KEY is)
    LUMOS_LLM_MODEL      model name           (default claude-sonnet-4-5 for anthropic; required for openai)
    LUMOS_LLM_BASE_URL   endpoint             (e.g. http://127.0.0.1:11434/v1 for ollama)
    LUMOS_LLM_API_KEY    key                  (else ANTHROPIC_API_KEY / OPENAI_API_KEY; local servers need none)
    LUMOS_LLM_PRICE_IN / LUMOS_LLM_PRICE_OUT  USD per million input / output tokens (for the cost line)

Both SDKs are in the optional ``llm`` extra (``pip install 'lumos-mcp[llm]'``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mcp import Client

Provider = Literal["anthropic", "openai"]
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-5"
#: SDK module per provider (the import name is also the pip package's name)
SDK: dict[Provider, str] = {"anthropic": "anthropic", "openai": "openai"}


class LLMUnavailable(RuntimeError):
    """No model is configured, or its SDK is not installed: the message says what to set or install."""


@dataclass(frozen=True)
class LLMConfig:
    provider: Provider
    model: str
    api_key: str
    base_url: str | None = None
    price_in_per_mtok: float | None = None
    price_out_per_mtok: float | None = None
    max_tokens: int = 2048

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LLMConfig:
        """The configuration the environment describes; `LLMUnavailable` says what is missing."""
        env = os.environ if env is None else env
        base_url = env.get("LUMOS_LLM_BASE_URL") or None
        provider = env.get("LUMOS_LLM_PROVIDER", "").strip().lower()
        if not provider:
            if env.get("ANTHROPIC_API_KEY"):
                provider = "anthropic"
            elif base_url or env.get("OPENAI_API_KEY"):
                provider = "openai"
            else:
                raise LLMUnavailable(
                    "no model configured: set ANTHROPIC_API_KEY, or LUMOS_LLM_BASE_URL and LUMOS_LLM_MODEL "
                    "for an OpenAI-compatible endpoint (LUMOS_LLM_PROVIDER=anthropic|openai to choose)"
                )
        if provider not in SDK:
            raise LLMUnavailable(f"LUMOS_LLM_PROVIDER must be anthropic or openai, not {provider!r}")
        key_var = "ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY"
        api_key = env.get("LUMOS_LLM_API_KEY") or env.get(key_var) or ""
        if not api_key and not base_url:
            raise LLMUnavailable(f"{provider}: set {key_var} (or LUMOS_LLM_API_KEY)")
        model = env.get("LUMOS_LLM_MODEL") or (DEFAULT_ANTHROPIC_MODEL if provider == "anthropic" else "")
        if not model:
            raise LLMUnavailable("openai-compatible endpoint: set LUMOS_LLM_MODEL (the model name it serves)")
        return cls(
            provider=provider,
            model=model,
            api_key=api_key or "unused",  # local servers ignore the key; the SDKs insist on one
            base_url=base_url,
            price_in_per_mtok=_price(env, "LUMOS_LLM_PRICE_IN"),
            price_out_per_mtok=_price(env, "LUMOS_LLM_PRICE_OUT"),
        )

    def describe(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        return f"{self.provider}:{self.model}{where}"


def _price(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError as e:
        raise LLMUnavailable(f"{name} must be a number (USD per million tokens), not {raw!r}") from e
    if value < 0:
        raise LLMUnavailable(f"{name} must not be negative")
    return value


@dataclass
class Usage:
    """Tokens and calls of one session, as the endpoint reported them."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    price_in_per_mtok: float | None = None
    price_out_per_mtok: float | None = None

    def add(self, input_tokens: int, output_tokens: int) -> None:
        self.calls += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    @property
    def cost_usd(self) -> float | None:
        """The session's cost, or None when the prices are not configured."""
        if self.price_in_per_mtok is None or self.price_out_per_mtok is None:
            return None
        return (self.input_tokens * self.price_in_per_mtok + self.output_tokens * self.price_out_per_mtok) / 1e6

    def line(self) -> str:
        cost = self.cost_usd
        money = f", ${cost:.4f}" if cost is not None else " (set LUMOS_LLM_PRICE_IN/OUT for the cost)"
        return f"{self.calls} model calls, {self.input_tokens} input + {self.output_tokens} output tokens{money}"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolOutcome:
    call: ToolCall
    text: str
    is_error: bool


@dataclass
class Reply:
    text: str
    calls: list[ToolCall] = field(default_factory=list)


class Conversation(Protocol):
    """One provider's message history; `send` runs one model call on it."""

    usage: Usage

    async def send(self) -> Reply: ...

    def add_results(self, outcomes: Sequence[ToolOutcome]) -> None: ...

    async def close(self) -> None: ...


def sdk(provider: Provider) -> Any:
    """The provider's SDK module; `LLMUnavailable` when it is not installed."""
    name = SDK[provider]
    if importlib.util.find_spec(name) is None:
        raise LLMUnavailable(f"the {name} package is not installed (pip install 'lumos-mcp[llm]')")
    return importlib.import_module(name)


def _usage(config: LLMConfig) -> Usage:
    return Usage(price_in_per_mtok=config.price_in_per_mtok, price_out_per_mtok=config.price_out_per_mtok)


class AnthropicConversation:
    def __init__(self, config: LLMConfig, prompt: str, tools: Sequence[Mapping[str, Any]]) -> None:
        kwargs: dict[str, Any] = {"api_key": config.api_key}
        if config.base_url:
            kwargs["base_url"] = config.base_url
        self.client = sdk("anthropic").AsyncAnthropic(**kwargs)
        self.config = config
        self.tools = [{"name": t["name"], "description": t["description"], "input_schema": t["schema"]} for t in tools]
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        self.usage = _usage(config)

    async def send(self) -> Reply:
        extra = {"tools": self.tools} if self.tools else {}
        reply = await self.client.messages.create(
            model=self.config.model, max_tokens=self.config.max_tokens, messages=self.messages, **extra
        )
        self.usage.add(reply.usage.input_tokens, reply.usage.output_tokens)
        blocks = [b.model_dump(exclude_none=True) for b in reply.content]
        self.messages.append({"role": "assistant", "content": blocks})
        text = "".join(b.get("text", "") for b in blocks if b["type"] == "text")
        calls = [ToolCall(b["id"], b["name"], dict(b.get("input") or {})) for b in blocks if b["type"] == "tool_use"]
        return Reply(text, calls)

    def add_results(self, outcomes: Sequence[ToolOutcome]) -> None:
        self.messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": o.call.id, "content": o.text, "is_error": o.is_error}
                    for o in outcomes
                ],
            }
        )

    async def close(self) -> None:
        await self.client.close()


class OpenAIConversation:
    def __init__(self, config: LLMConfig, prompt: str, tools: Sequence[Mapping[str, Any]]) -> None:
        kwargs: dict[str, Any] = {"api_key": config.api_key}
        if config.base_url:
            kwargs["base_url"] = config.base_url
        self.client = sdk("openai").AsyncOpenAI(**kwargs)
        self.config = config
        self.tools = [
            {
                "type": "function",
                "function": {"name": t["name"], "description": t["description"], "parameters": t["schema"]},
            }
            for t in tools
        ]
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        self.usage = _usage(config)

    async def send(self) -> Reply:
        extra = {"tools": self.tools} if self.tools else {}
        reply = await self.client.chat.completions.create(
            model=self.config.model, max_tokens=self.config.max_tokens, messages=self.messages, **extra
        )
        if reply.usage is not None:  # some local servers omit it; the session then counts no tokens
            self.usage.add(reply.usage.prompt_tokens, reply.usage.completion_tokens)
        else:
            self.usage.add(0, 0)
        message = reply.choices[0].message
        calls = [ToolCall(c.id, c.function.name, _arguments(c.function.arguments)) for c in message.tool_calls or []]
        entry: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if message.tool_calls:
            entry["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in message.tool_calls
            ]
        self.messages.append(entry)
        return Reply(message.content or "", calls)

    def add_results(self, outcomes: Sequence[ToolOutcome]) -> None:
        for o in outcomes:
            text = f"ERROR: {o.text}" if o.is_error else o.text  # chat completions has no error flag
            self.messages.append({"role": "tool", "tool_call_id": o.call.id, "content": text})

    async def close(self) -> None:
        await self.client.close()


def _arguments(raw: str | None) -> dict[str, Any]:
    """A tool call's arguments: a JSON object, or {} when the model sent nothing or broken JSON
    (the server then answers with its own validation error, which the model reads)."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def conversation(config: LLMConfig, prompt: str, tools: Sequence[Mapping[str, Any]] = ()) -> Conversation:
    """A new conversation with ``prompt`` as its first user message and ``tools``
    (``{"name", "description", "schema"}`` each) offered to the model."""
    if config.provider == "anthropic":
        return AnthropicConversation(config, prompt, tools)
    return OpenAIConversation(config, prompt, tools)


async def ask(config: LLMConfig, prompt: str) -> tuple[str, Usage]:
    """One question, one answer, no tools."""
    chat = conversation(config, prompt)
    try:
        reply = await chat.send()
    finally:
        await chat.close()
    return reply.text, chat.usage


@dataclass
class SessionReport:
    turns: int
    tool_calls: list[ToolOutcome]
    final_text: str
    usage: Usage


async def run_session(
    client: Client,
    config: LLMConfig,
    *,
    prompt: str | None = None,
    turns: int = 12,
    on_event: Callable[[str], None] = lambda line: None,
) -> SessionReport:
    """Drive the MCP server behind ``client`` with the model until it stops calling tools or
    ``turns`` model calls are spent. The prompt defaults to the server's ``tune-latency`` prompt."""
    if prompt is None:
        got = await client.get_prompt("tune-latency", {})
        prompt = "".join(getattr(m.content, "text", "") for m in got.messages)
    listed = (await client.list_tools()).tools
    tools = [{"name": t.name, "description": t.description or "", "schema": t.input_schema} for t in listed]
    chat = conversation(config, prompt, tools)
    try:
        return await _drive(client, chat, turns, on_event)
    finally:
        await chat.close()


async def _drive(client: Client, chat: Conversation, turns: int, on_event: Callable[[str], None]) -> SessionReport:
    done: list[ToolOutcome] = []
    text = ""
    for turn in range(1, turns + 1):
        reply = await chat.send()
        text = reply.text
        if text:
            on_event(f"agent: {text}")
        if not reply.calls:
            return SessionReport(turn, done, text, chat.usage)
        outcomes = []
        for call in reply.calls:
            result = await client.call_tool(call.name, call.arguments)
            body = "".join(getattr(c, "text", "") for c in result.content)  # JSON, error or not
            outcomes.append(ToolOutcome(call, body, bool(result.is_error)))
            on_event(f"tool {call.name}({json.dumps(call.arguments)[:120]}) -> {body[:160]}")
        done.extend(outcomes)
        chat.add_results(outcomes)
    return SessionReport(turns, done, text, chat.usage)
