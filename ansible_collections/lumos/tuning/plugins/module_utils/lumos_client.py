# -*- coding: utf-8 -*-
# Copyright: lumos-mcp contributors
# MIT License (see the LICENSE of lumos-mcp)
"""One tool call to the host's running lumos-mcp server, over MCP streamable HTTP with its bearer token.

The modules of this collection run on the managed host, under the Python that runs lumos-mcp
there (``ansible_python_interpreter``): that Python has the ``mcp`` client library, because the
server needs it. Each call is one MCP session (the SDK's ``Client``, protocol negotiated as the
server offers), so a tool's structured result and its typed error come through exactly as an
agent sees them. A lumos-mcp error result carries no structuredContent: its text is
``{"error": {"code", "message", "fields"}}``, which becomes :class:`LumosError`.
"""

from __future__ import annotations

import json
import time
import traceback

from ansible.module_utils.basic import env_fallback

try:
    import anyio
    import httpx2
    from mcp import Client, MCPError
    from mcp.client.streamable_http import streamable_http_client
except ImportError:
    HAS_MCP = False
    MCP_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_MCP = True
    MCP_IMPORT_ERROR = None

COMMON_ARGS = dict(
    url=dict(type="str", default="http://127.0.0.1:8765/mcp"),
    token=dict(type="str", no_log=True, fallback=(env_fallback, ["LUMOS_MCP_TOKEN"])),
    token_file=dict(type="path"),
    timeout_s=dict(type="float", default=60.0),
)
"""Options every module takes: where the server listens and how to authenticate."""


class LumosError(Exception):
    """A call that did not succeed: ``code`` is the server's typed code (``policy_denied``,
    ``invalid_state``...) or one of this client's (``unreachable``, ``unauthorized``,
    ``timeout``, ``protocol_error``, ``untyped_error``)."""

    def __init__(self, code, message, fields=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or {}

    def as_result(self):
        return dict(msg="%s: %s" % (self.code, self.message), code=self.code, fields=self.fields)


def token_of(params):
    """The bearer token: ``token`` (or $LUMOS_MCP_TOKEN), else the first line of ``token_file``."""
    if params.get("token"):
        return params["token"].strip()
    if params.get("token_file"):
        with open(params["token_file"]) as f:
            return f.read().strip()
    raise LumosError("no_token", "give token, token_file, or set LUMOS_MCP_TOKEN on the managed host")


def _leaves(exc):
    """The exceptions inside (nested) exception groups, in order."""
    if isinstance(exc, BaseExceptionGroup):
        out = []
        for inner in exc.exceptions:
            out.extend(_leaves(inner))
        return out
    return [exc]


def _classify(exc, url):
    for leaf in _leaves(exc):
        if isinstance(leaf, LumosError):
            return leaf
        if isinstance(leaf, httpx2.HTTPStatusError):
            status = leaf.response.status_code
            code = "unauthorized" if status in (401, 403) else "http_error"
            return LumosError(code, "%s answered HTTP %d" % (url, status), {"status": status})
        if isinstance(leaf, httpx2.TimeoutException):
            return LumosError("timeout", "%s did not answer in time" % url)
        if isinstance(leaf, httpx2.TransportError):
            return LumosError("unreachable", "%s: %s" % (url, leaf), {"url": url})
        if isinstance(leaf, TimeoutError):
            return LumosError("timeout", "%s did not answer in time" % url)
        if isinstance(leaf, MCPError):
            # the SDK reports an HTTP 401 as a JSON-RPC error without the status
            return LumosError("protocol_error", "%s: %s" % (url, leaf), {"url": url})
    return LumosError("protocol_error", "%s: %s" % (url, exc), {"url": url})


def _result_of(name, result):
    if not result.is_error:
        return result.structured_content or {}
    text = "".join(c.text for c in result.content if c.type == "text")
    try:
        err = json.loads(text)["error"]
        return LumosError(str(err["code"]), str(err["message"]), dict(err.get("fields") or {}))
    except (ValueError, KeyError, TypeError):
        return LumosError("untyped_error", "%s: %s" % (name, text[:500]))


def call_tool(url, token, name, arguments, timeout_s=60.0):
    """Call ``name`` with ``arguments`` on the server at ``url``; its structured result as a dict.

    Raises:
        LumosError: the server's typed error, or why the server could not be reached.
    """

    refused = []

    async def note_refusal(response):
        if response.status_code in (401, 403):
            refused.append(response.status_code)

    async def run():
        headers = {"Authorization": "Bearer %s" % token}
        with anyio.fail_after(timeout_s):
            hooks = {"response": [note_refusal]}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=timeout_s, event_hooks=hooks) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                result = await client.call_tool(name, arguments)
                return _result_of(name, result)

    try:
        out = anyio.run(run)
    except (BaseExceptionGroup, httpx2.HTTPError, MCPError, OSError, TimeoutError) as exc:
        if refused:  # the SDK reports a 401 as a JSON-RPC error without the status: the hook saw it
            status = refused[0]
            raise LumosError(
                "unauthorized", "%s refused the token (HTTP %d)" % (url, status), {"status": status}
            ) from exc
        raise _classify(exc, url) from exc
    if isinstance(out, LumosError):
        raise out
    return out


class Lumos:
    """The server behind one module invocation."""

    def __init__(self, module):
        if not HAS_MCP:
            from ansible.module_utils.basic import missing_required_lib

            module.fail_json(
                msg=missing_required_lib("mcp (run the module under the Python that runs lumos-mcp)"),
                exception=MCP_IMPORT_ERROR,
                code="missing_library",
            )
        self.module = module
        self.call_s = 0.0
        """Wall time spent in calls to the server (connect, MCP session, the tool), returned as ``lumos_call_s``."""
        self.url = module.params["url"]
        self.timeout_s = module.params["timeout_s"]
        try:
            self.token = token_of(module.params)
        except (LumosError, OSError) as exc:
            err = exc if isinstance(exc, LumosError) else LumosError("no_token", str(exc))
            module.fail_json(**err.as_result())

    def call(self, name, arguments=None):
        start = time.monotonic()
        try:
            return call_tool(self.url, self.token, name, arguments or {}, self.timeout_s)
        finally:
            self.call_s += time.monotonic() - start

    def exit(self, **result):
        self.module.exit_json(lumos_call_s=round(self.call_s, 4), **result)

    def fail(self, err, **extra):
        result = err.as_result()
        result.update(extra)
        self.module.fail_json(lumos_call_s=round(self.call_s, 4), **result)


def known_state(server, txid):
    """The transaction's state in the server's status (armed, staged, recent), or None."""
    status = server.call("get_status")
    for group in ("armed", "staged", "recent"):
        for tx in status.get(group, []):
            if tx["txid"] == txid:
                return tx["state"]
    return None


def close_transaction(server, tool, done, args):
    """Run ``tool`` (``commit`` or ``revert``) on ``args["txid"]`` and exit the module: changed when
    the call moved it to ``done``; unchanged when it already was ``done``; in check mode, only
    whether it would change (it must be ``applied``). Fails with the server's typed error otherwise."""
    module = server.module
    txid = args["txid"]
    try:
        if module.check_mode:
            state = known_state(server, txid)
            if state == "applied":
                server.exit(changed=True, txid=txid, state="applied")
            if state == done:
                server.exit(changed=False, txid=txid, state=state)
            raise LumosError("invalid_state", "transaction %r is %s, not applied" % (txid, state), {"state": state})
        out = server.call(tool, args)
    except LumosError as err:
        if err.code == "invalid_state" and err.fields.get("state") == done:
            server.exit(changed=False, txid=txid, state=done)
        server.fail(err, txid=txid)
    server.exit(
        changed=True, txid=txid, state=out["state"], values=out.get("values", {}), restored=out.get("restored", [])
    )


def diff_text(values):
    """``knob = value`` lines, sorted, for Ansible's --diff."""
    return "".join("%s = %s\n" % (k, json.dumps(values[k])) for k in sorted(values))
