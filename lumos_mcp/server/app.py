"""``build_server(service)``: the MCP server with every tool family registered, and the
``MCPServer`` subclass that types argument errors like every other error a tool returns."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from lumos_mcp import __version__
from lumos_mcp.bounded import clip, fits_json
from lumos_mcp.errors import InvalidArgumentsError, UnknownToolError
from lumos_mcp.server import approval, knobs, persist, ranker, resources, speculator, telemetry, transactions
from lumos_mcp.server import replay as replay_tool
from lumos_mcp.server.common import INSTRUCTIONS, failed
from lumos_mcp.service import Service


class LumosServer(MCPServer[Service]):
    """``MCPServer`` whose argument errors are typed like every other error a tool returns.

    The SDK answers arguments that fail the input schema with a bare text ("Error executing
    tool ...: 1 validation error ..."); a caller cannot act on that by code, so they come back
    as ``invalid_arguments`` naming the fields (not the values, which are the caller's data).
    Before the SDK sees them, arguments the tool does not have (the SDK drops them silently, so
    ``revert(txid, froce=true)`` was a plain revert), integers beyond 64 bits (the audit log and
    the journal cannot encode them) and non-finite numbers (JSON has none) are refused the same way.
    """

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Service, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            refused = _refused_arguments(name, set(tool.parameters.get("properties", {})), arguments)
            if refused is not None:
                return failed(refused)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e, UnexpectedToolError):
                raise
            if isinstance(e.__cause__, ValidationError):
                problems = e.__cause__.errors()
                fields = sorted({".".join(str(p) for p in err["loc"]) for err in problems})
                reasons = sorted({str(err["msg"]) for err in problems})
                return failed(InvalidArgumentsError("; ".join(reasons)[:500], tool=name, arguments=fields[:50]))
            if self._tool_manager.get_tool(name) is None:
                return failed(UnknownToolError(tool=name))
            raise


def _refused_arguments(tool: str, known: set[str], arguments: dict[str, Any]) -> InvalidArgumentsError | None:
    unknown = sorted(clip(k, 64) for k in arguments if k not in known)
    numbers = sorted(_bad_numbers(arguments))
    if not unknown and not numbers:
        return None
    reasons = []
    if unknown:
        reasons.append(f"{tool} has no argument {', '.join(map(repr, unknown[:10]))}")
    if numbers:
        reasons.append("integers beyond 64 bits and NaN or infinity are not accepted")
    return InvalidArgumentsError("; ".join(reasons), tool=tool, arguments=(unknown + numbers)[:50])


def _bad_numbers(value: Any, path: str = "") -> Iterator[str]:
    """Paths (``changes.vm.swappiness``) of integers orjson cannot encode and of non-finite floats."""
    if isinstance(value, bool):
        return
    if (isinstance(value, int) and not fits_json(value)) or (isinstance(value, float) and not math.isfinite(value)):
        yield path or "."
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _bad_numbers(v, f"{path}.{clip(str(k), 64)}" if path else clip(str(k), 64))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _bad_numbers(v, f"{path}.{i}")


def build_server(service: Service, *, token_verifier: Any = None, auth: Any = None) -> MCPServer[Service]:
    """The MCP server over ``service`` (already started: locked and recovered)."""

    @asynccontextmanager
    async def lifespan(server: MCPServer[Service]) -> AsyncIterator[Service]:
        async with service.telemetry.running(), anyio.create_task_group() as tg:
            tg.start_soon(service.run_deadlines)
            try:
                yield service
            finally:
                tg.cancel_scope.cancel()

    kwargs: dict[str, Any] = {}
    if token_verifier is not None:
        kwargs.update(token_verifier=token_verifier, auth=auth)
    mcp = LumosServer("lumos-mcp", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan, **kwargs)
    # the order of tools/list
    for family in (knobs, transactions, approval, telemetry, resources, speculator, ranker, replay_tool, persist):
        family.register(mcp, service)
    for tool in mcp._tool_manager.list_tools():
        tool.parameters["additionalProperties"] = False  # as call_tool enforces: say it in tools/list
    return mcp
