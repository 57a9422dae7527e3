# -*- coding: utf-8 -*-
# Copyright: lumos-mcp contributors
# MIT License (see the LICENSE of lumos-mcp)

from __future__ import annotations


class ModuleDocFragment:
    """The options every module of lumos.tuning takes: where the host's lumos-mcp server listens
    and how to authenticate (module_utils/lumos_client.py's COMMON_ARGS)."""

    DOCUMENTATION = r"""
options:
  url:
    description: The server's MCP endpoint on the managed host.
    type: str
    default: http://127.0.0.1:8765/mcp
  token:
    description: The server's bearer token. Defaults to E(LUMOS_MCP_TOKEN) on the managed host.
    type: str
  token_file:
    description: A file holding the bearer token, read when O(token) is not set.
    type: path
  timeout_s:
    description: Seconds to wait for each call to the server.
    type: float
    default: 60.0
"""
