"""The MCP layer: ``build_server(service)`` and one module per tool family.

``common`` holds what the tool modules share (annotations, ``ok``/``failed``, the error
wrapper) and imports none of them; ``app`` assembles the server from the families.
"""

from __future__ import annotations

from lumos_mcp.server.app import LumosServer, build_server

__all__ = ["LumosServer", "build_server"]
