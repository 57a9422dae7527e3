"""Fuzzed input: hypothesis drives every tool through the MCP client (in memory) over a fake
kernel tree, with wrong types, huge and negative numbers, unicode, path-like knob ids and
cgroup or device names (``../``, ``/``, NUL), knobs that share a file, and empty changes.

Edge values (integers beyond 64 bits, floats that pydantic turns into them, very long strings)
are also sent *alone*, as the value of one real knob or as a tool's one numeric argument: mixed
into random structures they almost never reached the code that handles them, because the
structure or a neighbouring key was refused first (a typed ``invalid_arguments`` or
``unknown_knob``). 10,000 calls once drew no call that staged a >64-bit integer on a real
knob, so the fuzz reported 0 untyped errors while such a call gave one.

After every call the tree is compared with the one before: a changed file must belong to a
knob the policy lists and hold a value inside the policy's bounds (a restore of an original
counts too). An error result must carry a code (its text is ``{"error": {"code", ...}}``,
read by ``api.tool_error``); anything else is an *untyped* error.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anyio
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult

from lumos_mcp.api import tool_error
from lumos_mcp.selftest.common import BOUNDS, Outcome, changed, make_bed, snapshot
from lumos_mcp.server import build_server

WRITING_TOOLS = frozenset({"apply", "commit", "revert"})
EVIL_NAMES = [
    "..",
    "../..",
    "../../etc",
    "/",
    "a/b",
    "x\x00y",
    "\x00",
    "",
    ".",
    "batch/../..",
    "ünïcødé",
    "‮drawkcab",
    "a" * 300,
    "vda/../../../tmp",
]
EVIL_IDS = [
    "../etc/passwd",
    "/proc/sys/vm/swappiness",
    "proc/sys/vm/swappiness",
    "vm.swappiness\x00",
    "vm/swappiness",
    "vm..swappiness",
    "VM.SWAPPINESS",
    "vm.swappiness ",
    "",
    "sched.",
    *(f"cgroup.{n}.cpu_weight" for n in EVIL_NAMES),
    *(f"cgroup.{n}.cpu_shares" for n in EVIL_NAMES),
    *(f"block.{n}.scheduler" for n in EVIL_NAMES),
    *(f"block.{n}.read_ahead_kb" for n in EVIL_NAMES),
]
REAL_IDS = [
    *BOUNDS,
    "cgroup.batch.cpu_weight",  # cgroup v1: a view of cpu.shares, so it and cpu_shares share a file
    "cgroup.batch.cpu_max",
    "cgroup.batch.cpu_idle",
    "block.vda.scheduler",
    "block.vda.read_ahead_kb",
    "thp.enabled",
    "sched.base_slice_ns",
    "net.core.somaxconn",
    "vm.min_free_kbytes",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**31, 2**31 - 1, 2**63, 2**63 - 1, 2**64, -(2**63) - 1, -1, 0, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["max", "max 100000", "50000 100000", "-1", "1e9", "0x10", " 10 ", "10\n", "[none]", "none"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
# values that broke the server once or sit on a boundary, sent where nothing else is wrong
edge_numbers = st.one_of(
    st.sampled_from([2**63, 2**63 - 1, 2**64, 2**64 - 1, -(2**63), -(2**63) - 1, 10**30, -(10**30), 2**80]),
    st.integers(min_value=2**64, max_value=2**200),
    st.integers(max_value=-(2**63) - 1, min_value=-(2**200)),
    st.sampled_from([1e30, -1e30, 1.7e308, -1.7e308, 5e-324, 1e100]),
)
edge_strings = st.sampled_from(["9" * 5000, "x" * 65536, "1" * 4301, "-" + "9" * 4400, "0x" + "f" * 300])
knob_ids = st.one_of(st.sampled_from(REAL_IDS), st.sampled_from(EVIL_IDS), st.text(max_size=40))
sane_values = st.one_of(*(st.integers(min_value=lo, max_value=hi) for lo, hi in BOUNDS.values()))
sane_changes = st.dictionaries(st.sampled_from(list(BOUNDS)), sane_values, min_size=1, max_size=3)
edge_changes = st.dictionaries(st.sampled_from(REAL_IDS), edge_numbers | edge_strings, min_size=1, max_size=1)
changes = st.one_of(
    sane_changes,
    sane_changes,
    sane_changes,
    edge_changes,
    edge_changes,
    st.dictionaries(knob_ids, st.one_of(sane_values, json_values), max_size=4),
    st.just({}),
    st.just({"cgroup.batch.cpu_weight": 50, "cgroup.batch.cpu_shares": 512}),
    json_values,
)


def _args(draw: st.DrawFn, txids: list[str]) -> tuple[str, dict[str, Any]]:
    tool = draw(
        st.sampled_from(
            [
                "stage_sched_params",
                "stage_sched_params",
                "stage_sched_params",
                "apply",
                "apply",
                "commit",
                "revert",
                "request_approval",
                "get_status",
                "list_tunables",
                "report_app_metric",
                "read_telemetry",
                "rank_configs",
                "speculator_status",
                "speculator_stop",
            ]
        )
    )

    def txid() -> Any:
        # draws never depend on what was staged (hypothesis replays draws); the index is resolved here
        if draw(st.integers(0, 2)) < 2:
            index = draw(st.integers(0, 19))
            return txids[index % len(txids)] if txids else "tx-00000000"
        return draw(st.one_of(st.text(max_size=70), json_values))

    maybe = st.one_of(st.just(None), json_values)
    args: dict[str, Any]
    if tool == "stage_sched_params":
        args = {"changes": draw(changes)}
        cw = draw(maybe | st.floats(min_value=0.001, max_value=1e6) | st.sampled_from([0, -1, 86401, 1e308]))
        if cw is not None:
            args["confirm_within_s"] = cw
    elif tool in ("apply", "commit", "revert", "request_approval"):
        args = {"txid": txid()}
        if tool == "apply" and draw(st.booleans()):
            args["approval_id"] = draw(st.one_of(st.text(max_size=70), json_values))
        if tool == "revert":
            args["force"] = draw(st.one_of(st.booleans(), json_values))
        if tool == "request_approval":
            args["wait_s"] = draw(st.one_of(st.just(0), st.sampled_from([-1, 601, "x", None]), edge_numbers))
    elif tool == "list_tunables":
        args = {"group": draw(st.one_of(st.sampled_from(["sched", "vm", "cgroup", "bogus", "../"]), json_values))}
        args["only_allowed"] = draw(st.one_of(st.booleans(), json_values))
    elif tool == "report_app_metric":
        name = draw(st.sampled_from(["api.p99_ms", "orders.rps"]) | st.text(max_size=200))
        args = {
            "name": name,
            "value": draw(json_values | edge_numbers),
            "unit": draw(st.just("ms") | st.text(max_size=40)),
        }
    elif tool == "rank_configs":
        signature = st.dictionaries(st.sampled_from(["sched.ctx_switches_per_s", "cpu.util_pct"]), edge_numbers)
        candidate = st.fixed_dictionaries({"label": st.text(max_size=8)}, optional={"signature": signature})
        args = {"candidates": draw(st.lists(candidate, min_size=2, max_size=3) | json_values)}
        if draw(st.booleans()):
            args["incumbent"] = draw(edge_numbers | json_values)
    elif tool == "speculator_stop":
        args = {"revert": draw(st.booleans() | json_values)}
    elif tool == "read_telemetry":
        # valid windows stay tiny: a valid call waits for its window of samples
        args = {"window_s": draw(st.one_of(st.floats(min_value=0.01, max_value=0.2), json_values))}
        args["sections"] = draw(st.one_of(st.none(), st.lists(st.text(max_size=10), max_size=3), json_values))
    else:
        args = {}
    if draw(st.integers(0, 19)) == 0:  # now and then, an argument no tool has
        args[draw(st.text(max_size=10))] = draw(json_values)
    return tool, args


def _error_code(result: Any) -> str | None:
    error = tool_error(result)
    return error.code if error is not None and error.code else None


def run(base: Path, calls: int = 300, seed_value: int = 1) -> Outcome:
    """``calls`` fuzzed tool calls. Figures: calls, ok, typed errors (by code), untyped errors
    (must be 0), protocol errors, writes seen, writes outside policy (must be 0)."""
    out = Outcome("fuzz")
    bed = make_bed(base)
    service = bed.service()
    knob_files = {f: k for k in BOUNDS for f in service.backend.resolve(k).files}
    originals = snapshot(bed.tree)
    figures: dict[str, Any] = {
        "calls": 0,
        "ok": 0,
        "typed_errors": 0,
        "untyped_errors": 0,
        "protocol_errors": 0,
        "writes_seen": 0,
        "writes_outside_policy": 0,
    }
    codes: dict[str, int] = {}
    txids: list[str] = []
    answers = itertools.cycle([True, False, True])

    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        if next(answers):
            return ElicitResult(action="accept", content={"approve": True, "note": "selftest"})
        return ElicitResult(action="decline")

    try:
        with start_blocking_portal() as portal:
            client_cm = Client(build_server(service), elicitation_callback=on_elicit)
            with portal.wrap_async_context_manager(client_cm) as client:

                def call(tool: str, args: dict[str, Any]) -> Any:
                    async def go() -> Any:
                        with anyio.fail_after(60):
                            return await client.call_tool(tool, args)

                    return portal.call(go)

                @seed(seed_value)
                @settings(
                    max_examples=calls,
                    database=None,
                    deadline=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(st.data())
                def one(data: st.DataObject) -> None:
                    tool, args = data.draw(st.composite(lambda draw: _args(draw, txids))())
                    before = snapshot(bed.tree)
                    figures["calls"] += 1
                    try:
                        result = call(tool, args)
                    except MCPError as e:
                        figures["protocol_errors"] += 1
                        codes[f"rpc {e.error.code}"] = codes.get(f"rpc {e.error.code}", 0) + 1
                        result = None
                    if result is not None and result.is_error:
                        code = _error_code(result)
                        if code is None:
                            figures["untyped_errors"] += 1
                            text = "".join(getattr(c, "text", "") for c in result.content)[:160]
                            out.fail(f"untyped error from {tool}({_short(args)}): {text!r}")
                        else:
                            figures["typed_errors"] += 1
                            codes[code] = codes.get(code, 0) + 1
                    elif result is not None:
                        figures["ok"] += 1
                        data_out = result.structured_content or {}
                        if tool == "stage_sched_params" and isinstance(data_out.get("txid"), str):
                            txids.append(data_out["txid"])
                            del txids[:-20]
                    _check_writes(bed.tree, before, originals, knob_files, tool, args, figures, out)

                one()
    finally:
        service.close()
    figures["error_codes"] = dict(sorted(codes.items(), key=lambda kv: -kv[1]))
    out.figures = figures
    return out


def _check_writes(
    tree: Path,
    before: dict[str, bytes],
    originals: dict[str, bytes],
    knob_files: dict[str, str],
    tool: str,
    args: dict[str, Any],
    figures: dict[str, Any],
    out: Outcome,
) -> None:
    after = snapshot(tree)
    for rel in changed(before, after):
        figures["writes_seen"] += 1
        knob = knob_files.get(rel)
        text = after.get(rel, b"").decode(errors="replace").strip()
        restored = after.get(rel) == originals.get(rel)
        inside = False
        if knob is not None:
            lo, hi = BOUNDS[knob]
            inside = text.lstrip("-").isdigit() and lo <= int(text) <= hi
        # outside a writing tool only the server's own auto-revert may write, and only originals back
        if knob is None or not (inside or restored) or (tool not in WRITING_TOOLS and not restored and not inside):
            figures["writes_outside_policy"] += 1
            out.fail(f"write outside policy during {tool}({_short(args)}): {rel} = {text!r}")
    dirty = after.get("proc/sys/vm/dirty_ratio"), after.get("proc/sys/vm/dirty_background_ratio")
    if dirty != (before.get("proc/sys/vm/dirty_ratio"), before.get("proc/sys/vm/dirty_background_ratio")):
        ratio, background = (int(v or b"0") for v in dirty)
        if not background < ratio:
            figures["writes_outside_policy"] += 1
            out.fail(f"cross rule broken during {tool}: dirty_background_ratio {background} >= dirty_ratio {ratio}")


def _short(args: dict[str, Any]) -> str:
    text = repr(args)
    return text if len(text) <= 160 else text[:157] + "..."
