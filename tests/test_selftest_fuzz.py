"""Fuzzed tool input through the MCP client: every error typed, no write outside the policy."""

from __future__ import annotations

from pathlib import Path

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
