"""``build_server(service)``: the MCP server with every tool family registered, and the
``MCPServer`` subclass that types argument errors like every other error a tool returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from lumos_mcp import __version__
from lumos_mcp.errors import InvalidArgumentsError, UnknownToolError
from lumos_mcp.server import approval, knobs, ranker, resources, speculator, telemetry, transactions
from lumos_mcp.server.common import INSTRUCTIONS, failed
from lumos_mcp.service import Service


class LumosServer(MCPServer[Service]):
    """``MCPServer`` whose argument errors are typed like every other error a tool returns.

    The SDK answers arguments that fail the input schema with a bare text ("Error executing
    tool ...: 1 validation error ..."); a caller cannot act on that by code, so they come back
    as ``invalid_arguments`` naming the fields (not the values, which are the caller's data).
    """

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Service, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
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
    for family in (knobs, transactions, approval, telemetry, resources, speculator, ranker):
        family.register(mcp, service)
    return mcp
