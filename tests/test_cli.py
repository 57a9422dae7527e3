"""`lumos-mcp status` on a fresh state directory and while a server holds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lumos_mcp.cli import main
from lumos_mcp.service import Service, ServiceConfig


def test_status_on_a_fresh_state_dir_says_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "server: not running" in out and "no open transactions" in out


def test_status_names_the_running_servers_pid_and_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = Service(ServiceConfig(mode="sandbox", state_dir=tmp_path, perf=False))
    service.start()
    try:
        assert main(["status", "--state-dir", str(tmp_path)]) == 0
    finally:
        service.close()
    assert f"running (pid {os.getpid()}, sandbox mode)" in capsys.readouterr().out
