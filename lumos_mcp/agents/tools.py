"""A thin MCP client for the project's own agents: call a tool, get its structured result, or a
typed error carrying the server's error code."""

from __future__ import annotations

from typing import Any

import orjson
from mcp import Client
from mcp.types import ContentBlock, TextContent


class ToolCallError(Exception):
    """A tool answered with ``is_error``: ``code`` is the server's error code (act on it)."""

    def __init__(self, tool: str, code: str, message: str) -> None:
        super().__init__(f"{tool}: {code}: {message}")
        self.tool = tool
        self.code = code


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
        data = result.structured_content or {}
        if result.is_error:
            error = _error_of(data, result.content)
            raise ToolCallError(tool, str(error.get("code", "error")), str(error.get("message", result.content)))
        return data


def _error_of(data: object, content: list[ContentBlock]) -> dict[str, Any]:
    """The error's ``{code, message, fields}``: from the structured content (``{"error": ...}``), or from
    the text content, where a server that sends no structured content on errors puts the same JSON."""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return dict(data["error"])
    for block in content:
        if isinstance(block, TextContent):
            try:
                parsed = orjson.loads(block.text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                inner = parsed.get("error", parsed)
                if isinstance(inner, dict) and "code" in inner:
                    return dict(inner)
    return {}
