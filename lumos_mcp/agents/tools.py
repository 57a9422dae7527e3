"""A thin MCP client for the project's own agents: call a tool, get its structured result, or a
typed error carrying the server's error code."""

from __future__ import annotations

from typing import Any

from mcp import Client

from lumos_mcp.api import tool_error


class ToolCallError(Exception):
    """A tool answered with ``is_error``: ``code`` is the server's error code (act on it)."""

    def __init__(self, tool: str, code: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(f"{tool}: {code}: {message}")
        self.tool = tool
        self.code = code
        self.fields: dict[str, Any] = fields or {}


class ToolClient:
    """Calls tools over an MCP client session and counts the calls per tool."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.calls: dict[str, int] = {}

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """The tool's structured result.

        Raises:
            ToolCallError: the tool answered with an error.
        """
        self.calls[tool] = self.calls.get(tool, 0) + 1
        result = await self.client.call_tool(tool, args or {})
        if result.is_error:
            error = tool_error(result)
            text = "".join(c.text for c in result.content if c.type == "text")
            raise ToolCallError(
                tool, error.code if error else "error", error.message if error else text, error.fields if error else {}
            )
        return result.structured_content or {}
