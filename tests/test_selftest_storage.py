"""Storage faults: torn and corrupt journals, a full disk, read-only and missing state
directories, and two servers on one state directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumos_mcp.selftest import storage
from lumos_mcp.selftest.common import Outcome


@pytest.mark.parametrize("case", sorted(storage.CASES))
def test_storage_fault_refuses_writes_and_accounts_for_every_knob(tmp_path: Path, case: str) -> None:
    out = Outcome("storage")
    storage.CASES[case](tmp_path, out)
    if out.skipped:
        pytest.skip("; ".join(out.skipped))
    assert out.problems == []
    assert case in out.figures
