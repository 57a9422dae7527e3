"""A minimal stdio MCP server with one ``noop`` tool: the transport baseline for bench_tools.

Started exactly like ``python -m lumos_mcp serve`` (same interpreter, cwd and environment),
so ``noop`` over stdio costs what the SDK and the pipe cost, and nothing of lumos-mcp.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

NOOP_ANNOTATIONS = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def noop() -> str:
    """Do nothing and return "ok" (a plain ``def``: it runs on a worker thread, like most lumos tools)."""
    return "ok"


def build_noop_server() -> MCPServer[None]:
    server: MCPServer[None] = MCPServer("noop")
    server.add_tool(noop, name="noop", annotations=NOOP_ANNOTATIONS)
    return server


if __name__ == "__main__":
    build_noop_server().run("stdio")
