"""What every tool module shares: the annotations, the result builders (``ok``/``failed``),
the error wrapper and the service lookup. This module imports no tool module of the package,
so each tool module can import it without a cycle (``tests/test_server_layering.py`` pins it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, cast

import orjson
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from lumos_mcp.bounded import MAX_MESSAGE, bounded, clip
from lumos_mcp.errors import LumosError
from lumos_mcp.service import Service

P = ParamSpec("P")

INSTRUCTIONS = """\
lumos-mcp tunes this Linux host's kernel safely. The loop:
1. read_telemetry and list_tunables: see the workload and which knobs exist here, with the policy's bounds.
2. stage_sched_params({knob: value}): validates without writing; returns the diff, the verdict and a txid.
3. request_approval(txid) if the stage result says approval_required.
4. apply(txid): writes through a journal and arms an auto-revert deadline.
5. Measure (read_telemetry), then commit(txid) to keep or revert(txid) to undo. Without a commit before the
   deadline the server reverts by itself. Errors carry a code and fields: act on them.
Guards: stage with guards=[{metric, ratio or value, hold_samples}] on your objective (and the policy's own,
lumos://policy/guards): the server reverts a change the moment a watched metric says it hurts."""

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
STAGING = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
REPORTING = STAGING
WRITING = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)


def ok(model: BaseModel) -> CallToolResult:
    """A successful result: the model as structured content, mirrored as JSON text."""
    data = model.model_dump(mode="json")
    return CallToolResult(content=[TextContent(type="text", text=orjson.dumps(data).decode())], structured_content=data)


def failed(error: LumosError) -> CallToolResult:
    """An ``is_error`` result whose text is ``{"error": {"code", "message", "fields"}}`` (``api.ErrorBody``).

    No ``structured_content``: it would have to match the tool's output schema, which describes
    success. The TypeScript SDK client validates structured content whenever it is present
    (error or not) and answers -32602 when it does not match; it and the Python SDK accept an
    error result without it.

    Message and fields are bounded (``lumos_mcp.bounded``): a rejected 1 MiB value comes back
    as its first characters and a note saying how long it was.
    """
    data = {"error": {"code": error.code, "message": clip(str(error), MAX_MESSAGE), "fields": bounded(error.fields)}}
    return CallToolResult(content=[TextContent(type="text", text=orjson.dumps(data).decode())], is_error=True)


def domain_errors(fn: Callable[P, Any]) -> Callable[P, Any]:
    """Turn the domain's errors into ``is_error`` results the model can act on."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await fn(*args, **kwargs)
            except LumosError as e:
                return failed(e)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except LumosError as e:
            return failed(e)

    return wrapper


def service_of(ctx: Context) -> Service:
    """The service the server's lifespan yielded."""
    return cast(Service, ctx.request_context.lifespan_context)
