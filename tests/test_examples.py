"""examples/operator_approval.md works as written: the scripted session (one process) waits for an
approval that the operator grants with `lumos-mcp approvals approve` (another process), then applies
and commits; without LUMOS_STATE_DIR it leaves no temporary directory behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lumos_mcp.approvals import ApprovalStore
from lumos_mcp.audit import iter_records, verify
from lumos_mcp.cli import main

ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / "examples" / "scripted_session.py"

pytestmark = pytest.mark.slow


def session_env(tmp_path: Path, state: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LUMOS_STATE_DIR"}
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")
    if state is not None:
        env["LUMOS_STATE_DIR"] = str(state)
    return env


def wait_for_pending(state: Path, proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The id of the first pending approval in ``state``, polled while the session runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if (state / "approvals.json").exists():
            pending = ApprovalStore(state).list(status="pending")
            if pending:
                return pending[0].id
        time.sleep(0.2)  # another process writes it: nothing to wait on but the file
    out, _ = proc.communicate(timeout=10) if proc.poll() is not None else ("(still running)", None)
    raise AssertionError(f"no pending approval appeared; session output:\n{out}")


def test_the_operator_approval_walkthrough_applies_and_commits_after_an_approval_from_another_process(
    tmp_path: Path,
) -> None:
    state = tmp_path / "lumos-demo"
    proc = subprocess.Popen(
        [sys.executable, str(SESSION)],
        cwd=ROOT,
        env=session_env(tmp_path, state),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        approval_id = wait_for_pending(state, proc, timeout_s=60)
        assert main(["approvals", "approve", approval_id, "--state-dir", str(state), "--note", "ok for the test"]) == 0
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "approval: granted" in out and "committed:" in out
    events = [r["event"] for r in iter_records(state / "audit.jsonl")]
    assert events.index("approval_requested") < events.index("approval_granted") < events.index("apply")
    assert "commit" in events
    assert verify(state / "audit.jsonl").ok


def test_the_scripted_session_without_a_state_dir_leaves_no_temporary_directory_behind(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SESSION), "--approval-wait", "0"],
        cwd=ROOT,
        env=session_env(tmp_path, None),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "apply refused:" in result.stdout  # nobody approved within 0 s
    assert list((tmp_path / "tmp").iterdir()) == []
