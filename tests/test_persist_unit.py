"""The shipped systemd unit (issue 14 item 4): it re-applies at boot after systemd-sysctl, and
``systemd-analyze verify`` accepts it where systemd-analyze is installed."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "packaging" / "systemd" / "lumos-mcp-reapply.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_reapplies_the_live_state_once_at_boot_after_systemd_sysctl() -> None:
    u = unit()
    assert "systemd-sysctl.service" in u["Unit"]["After"].split()
    assert u["Service"]["Type"] == "oneshot"
    assert u["Service"]["ExecStart"].split()[1:] == ["reapply", "--live"]
    state = u["Service"]["Environment"].removeprefix("LUMOS_STATE_DIR=")
    assert u["Unit"]["ConditionPathExists"] == state
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verify_accepts_the_unit_as_the_readme_installs_it(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    lumos = shutil.which("lumos-mcp") or str(Path(__file__).parent.parent / ".venv" / "bin" / "lumos-mcp")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    installed = tmp_path / UNIT.name  # the README's sed: the path of this install's lumos-mcp
    installed.write_text(UNIT.read_text().replace("/usr/local/bin/lumos-mcp", lumos))
    run = subprocess.run([analyze, "verify", str(installed)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "", run.stderr  # not even a warning (an unknown key, a bad ordering)
