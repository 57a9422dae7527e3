"""Bad command-line input gets a one-line usage error (exit 2), never a traceback; common flags work
after the subcommand; tables are not cut at 80 columns when the output is not a terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lumos_mcp.approvals import ApprovalStore
from lumos_mcp.cli import main, parser

ROOT = Path(__file__).resolve().parent.parent

BAD_INPUT = [
    ["tune", "--window", "0"],
    ["tune", "--window", "-1"],
    ["tune", "--window", "nan"],
    ["tune", "--window", "1e9"],
    ["tune", "--rounds", "0"],
    ["tune", "--rounds", "-1"],
    ["tune", "--rounds", "two"],
    ["tune", "--repeats", "0"],
    ["tune", "--mode", "observe"],
    ["tune", "--live", "--mode", "sandbox"],
    ["tune", "--policy", "/nonexistent/policy.toml"],
    ["tune", "--state-dir", "/etc/hostname"],
    ["serve", "--port", "0"],
    ["serve", "--port", "70000"],
    ["serve", "--token-file", "/nonexistent/token"],
    ["serve", "--mode", "bogus"],
    ["status", "--state-dir", "/etc/hostname"],
    ["approvals", "list", "--state-dir", "/etc/hostname"],
    ["approvals", "approve"],
    ["audit", "tail", "-n", "0"],
    ["audit", "tail", "-n", "-3"],
    ["audit", "verify", "--state-dir", "/etc/hostname"],
    ["audit", "verify", "--anchor", "/nonexistent/anchors.jsonl"],
    ["audit", "replay", "--at", "yesterday"],
    ["audit", "replay", "--policy", "/nonexistent/policy.toml"],
    ["audit", "replay", "--mode", "bogus"],
    ["metrics", "--state-dir", "/etc/hostname"],
    ["recover", "--policy", "/nonexistent/policy.toml"],
    ["top", "--window", "0"],
    ["top", "--interval", "-1"],
    ["top", "--interval", "inf"],
    ["selftest", "--only", "bogus"],
    ["selftest", "--seed", "x"],
    ["arena", "run", "--seeds", "0"],
    ["arena", "report", "--seeds", "-2"],
    ["desktop-config", "--policy", "/nonexistent/policy.toml"],
    ["desktop-config", "--mode", "bogus"],
    ["export"],
    ["export", "--format", "ini"],
    ["export", "--format", "json", "--live", "--mode", "sandbox"],
    ["drift", "--mode", "bogus"],
    ["drift", "--state-dir", "/etc/hostname"],
    ["reapply", "--approval-wait", "-1"],
    ["reapply", "--live", "--mode", "sandbox"],
    ["bogus-command"],
]


@pytest.mark.parametrize("argv", BAD_INPUT, ids=" ".join)
def test_every_subcommand_refuses_bad_values_with_a_usage_error_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("lumos-mcp")


def test_every_subcommand_in_the_parser_has_a_bad_input_case() -> None:
    commands = {
        name
        for action in parser()._subparsers._group_actions  # type: ignore[union-attr]
        for name in getattr(action, "choices", {})
    }
    assert commands == {argv[0] for argv in BAD_INPUT} - {"bogus-command"}


@pytest.mark.slow
def test_tune_with_a_zero_window_prints_one_error_line_and_no_traceback_from_the_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lumos_mcp", "tune", "--window", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("lumos-mcp tune: error: argument --window")


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "verify", "--state-dir", "{state}"],
        ["audit", "--state-dir", "{state}", "verify"],
        ["audit", "tail", "--state-dir", "{state}", "-n", "1"],
        ["approvals", "list", "--state-dir", "{state}"],
        ["approvals", "--state-dir", "{state}", "list"],
        ["status", "--state-dir", "{state}", "-v"],
    ],
    ids=" ".join,
)
def test_the_state_dir_flag_works_before_and_after_the_action(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lumos_mcp.audit import AuditLog

    AuditLog(tmp_path / "audit.jsonl").append("test_event")
    assert main([a.format(state=tmp_path) for a in argv]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out or "test_event" in out or "no pending approvals" in out


def test_a_state_dir_before_the_action_is_not_overwritten_by_the_actions_default() -> None:
    args = parser().parse_args(["audit", "--state-dir", "/some/where", "verify"])
    assert args.state_dir == Path("/some/where")


def test_tune_does_not_offer_observe_mode() -> None:
    tune = parser()._subparsers._group_actions[0].choices["tune"]  # type: ignore[union-attr]
    mode = next(a for a in tune._actions if a.dest == "mode")
    assert tuple(mode.choices or ()) == ("sandbox", "live")


def test_approvals_list_is_not_cut_at_80_columns_when_piped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = "cgroup.a-rather-long-cgroup-name.cpu_weight 100 -> 25, vm.dirty_background_ratio 10 -> 5"
    approval = ApprovalStore(tmp_path).request("tx-0123456789abcdef", "d" * 64, summary, lifetime_s=600)
    assert main(["approvals", "list", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert approval.id in out and "tx-0123456789abcdef" in out
    assert "…" not in out  # nothing elided
    assert summary in out


def test_an_arena_action_names_the_extra_it_needs_when_a_module_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import lumos_mcp.cli as cli

    monkeypatch.setattr(cli, "ARENA_NEEDS", {**cli.ARENA_NEEDS, "report": ("lumos_no_such_module",)})
    assert main(["arena", "report", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lumos_no_such_module" in err and "lumos-mcp[arena]" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_top_once_says_on_stderr_that_it_is_sampling_and_when_the_window_is_complete(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lumos_mcp.telemetry.top import _progress_on_stderr

    progress = _progress_on_stderr(3.0)
    await progress(1.0, 3.0, "collecting a fresh 3 s window")
    await progress(3.0, 3.0, "window complete")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 2  # not a terminal: a start line and an end line, no per-sample noise
    assert "3 s window" in lines[0] and "window complete" in lines[1]


@pytest.mark.parametrize("name", ["default", "latency", "readonly", "speculate", "arena"])
def test_every_shipped_policy_is_accepted_by_name(name: str) -> None:
    assert parser().parse_args(["tune", "--policy", name]).policy == Path(name)
