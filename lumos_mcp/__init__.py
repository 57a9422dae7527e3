"""lumos-mcp: an MCP server that lets AI agents tune a live Linux host, safely."""

__version__ = "0.1.0"

__all__ = ["__version__"]
