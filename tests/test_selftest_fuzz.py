"""Fuzzed tool input through the MCP client: every error typed, no write outside the policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

from lumos_mcp.selftest import fuzz


def test_fuzzed_tool_calls_get_typed_errors_and_never_write_outside_policy(tmp_path: Path) -> None:
    out = fuzz.run(tmp_path, calls=300, seed_value=3)
    f = out.figures
    assert out.problems == []
    assert f["calls"] == 300
    assert f["untyped_errors"] == 0
    assert f["writes_outside_policy"] == 0
    assert f["typed_errors"] > 0
    assert f["ok"] > 0


def test_the_fuzz_stages_integers_beyond_64_bits_alone_on_real_knobs() -> None:
    # Mixed into random structures such a value was refused for its neighbours first: 10,000
    # draws once held no call that staged one on a real knob, so none ever reached the codec.
    staged: list[dict[str, Any]] = []

    @seed(3)
    @settings(max_examples=300, database=None, deadline=None, phases=[Phase.generate])
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        tool, args = data.draw(st.composite(lambda d: fuzz._args(d, ["tx-00000000"]))())
        if tool == "stage_sched_params":
            staged.append(args)

    draw()
    alone = [
        a
        for a in staged
        if isinstance(a["changes"], dict)
        and len(a["changes"]) == 1
        and set(a["changes"]) <= set(fuzz.REAL_IDS)
        and any(isinstance(v, int) and not -(2**63) <= v < 2**64 for v in a["changes"].values())
    ]
    assert len(alone) >= 3
