"""Crash injection, short form: real server processes SIGKILLed, then recovered and checked;
real servers ended every way with a change armed."""

from __future__ import annotations

from pathlib import Path

from lumos_mcp.selftest import crash


def test_kill_at_random_points_never_leaves_a_knob_the_journal_disagrees_with(tmp_path: Path) -> None:
    out = crash.run(tmp_path, trials=100, seed=7)
    f = out.figures
    assert out.problems == []
    assert f["trials"] == 100
    assert f["mismatches"] == 0
    assert f["unaccounted_files"] == 0
    assert f["audit_breaks"] == 0
    assert f["knobs_checked"] > 1000
    assert f["kills"] >= 50
    assert f["recovery_kills"] >= 1
    covered = set(f["kill_points"])
    assert any(p.startswith("apply/") for p in covered)
    assert any(p.startswith("recover/") for p in covered)
    assert f["exit_trials"] == 4  # one real server per kind of exit: EOF, SIGTERM, SIGINT, SIGKILL
    assert f["exits_late"] == 0
    assert f["exit_processes_left"] == 0
