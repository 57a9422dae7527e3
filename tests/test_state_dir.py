"""Invariant 12: the state directory and every file in it belong to the server's user, are
0700/0600 whatever the umask, and are never reached through a symlink."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lumos_mcp import cli
from lumos_mcp.approvals import ApprovalStore
from lumos_mcp.audit import AuditLog
from lumos_mcp.errors import JournalError, StateDirUnsafeError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.privfs import atomic_write_private, check_state_dir, ensure_private_dir, open_private
from lumos_mcp.resources import policy_path
from lumos_mcp.service import Service, ServiceConfig

NOBODY = 65534
SWAPPINESS = "proc/sys/vm/swappiness"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Every entry under ``root`` (and ``root``) -> its permission bits."""
    out = {".": stat.S_IMODE(os.lstat(root).st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            p = Path(dirpath, name)
            out[str(p.relative_to(root))] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def not_private(root: Path) -> dict[str, str]:
    bad = {}
    for rel, mode in modes(root).items():
        is_dir = (root / rel).is_dir() and not (root / rel).is_symlink()
        if mode != (0o700 if is_dir else 0o600):
            bad[rel] = f"{mode:04o}"
    return bad


def config(fake: FakeKernel, state: Path, mode: str = "live") -> ServiceConfig:
    return ServiceConfig(
        mode=mode,  # type: ignore[arg-type]
        state_dir=state,
        policy=policy_path("default"),
        host_root=fake.base,
        telemetry_root=Path("/"),
        perf=False,
    )


def started(fake: FakeKernel, state: Path, mode: str = "live") -> Service:
    service = Service(config(fake, state, mode))
    service.start()
    return service


def exercise(service: Service) -> None:
    """Touch every file a server keeps: journal, audit log, approvals, lock, sandbox."""
    staged = service.stage({"vm.swappiness": 50})
    service.request_approval(staged.tx.id)
    service.apply(staged.tx.id)
    service.commit(staged.tx.id)


def refusal(action: Callable[[], object]) -> StateDirUnsafeError:
    with pytest.raises(StateDirUnsafeError) as info:
        action()
    return info.value


# ------------------------------------------------------------------------------ modes
@pytest.mark.parametrize("mode", ["live", "sandbox"])
def test_under_umask_0_every_directory_is_0700_and_every_file_0600(fake: FakeKernel, tmp_path: Path, mode: str) -> None:
    state = tmp_path / "new" / "state"
    with umask(0):
        service = started(fake, state, mode)
        try:
            exercise(service)
        finally:
            service.close()
    assert not_private(state) == {}
    assert stat.S_IMODE(os.lstat(tmp_path / "new").st_mode) == 0o700  # parents it created too


def test_a_restart_keeps_the_journal_and_every_file_0600(fake: FakeKernel, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with umask(0o022):
        first = started(fake, state)
        staged = first.stage({"vm.swappiness": 50})
        first.apply(staged.tx.id)
        first.close()  # armed: the next start recovers and rewrites the journal
        second = started(fake, state)
        second.close()
    assert second.recovery is not None and second.recovery.transactions
    assert not_private(state) == {}


def test_a_state_dir_left_readable_by_others_is_made_private_at_start(fake: FakeKernel, tmp_path: Path) -> None:
    state = tmp_path / "state"
    started(fake, state).close()
    os.chmod(state, 0o755)
    os.chmod(state / "audit.jsonl", 0o644)
    started(fake, state).close()
    assert not_private(state) == {}


# ------------------------------------------------------------------------------ ownership and modes refused
def test_a_group_writable_state_dir_is_refused_naming_path_and_problem(fake: FakeKernel, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chmod(state, 0o770)
    error = refusal(lambda: Service(config(fake, state)))
    assert error.code == "state_dir_unsafe"
    assert error.fields["path"] == str(state)
    assert error.fields["problem"] == "group_or_world_writable"


def test_a_state_dir_owned_by_another_user_is_refused(fake: FakeKernel, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    error = refusal(lambda: Service(config(fake, state)))
    assert (error.fields["path"], error.fields["problem"]) == (str(state), "not_owned")


@pytest.mark.parametrize("name", ["journal-live.jsonl", "audit.jsonl", "approvals.json"])
@pytest.mark.parametrize(("change", "problem"), [("chmod", "group_or_world_writable"), ("chown", "not_owned")])
def test_a_file_in_the_state_dir_that_others_could_change_is_refused(
    fake: FakeKernel, tmp_path: Path, name: str, change: str, problem: str
) -> None:
    state = tmp_path / "state"
    exercise_then_close(fake, state)
    if change == "chmod":
        os.chmod(state / name, 0o666)
    else:
        os.chown(state / name, NOBODY, NOBODY)
    error = refusal(lambda: Service(config(fake, state)))
    assert (error.fields["path"], error.fields["problem"]) == (str(state / name), problem)


def test_a_hard_link_planted_in_the_state_dir_is_refused(fake: FakeKernel, tmp_path: Path) -> None:
    state = tmp_path / "state"
    started(fake, state).close()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / "journal-live.jsonl").unlink()
    os.link(victim, state / "journal-live.jsonl")
    error = refusal(lambda: Service(config(fake, state)))
    assert (error.fields["path"], error.fields["problem"]) == (str(state / "journal-live.jsonl"), "hard_linked")
    assert victim.read_text() == "precious\n"


def exercise_then_close(fake: FakeKernel, state: Path, mode: str = "live") -> None:
    service = started(fake, state, mode)
    try:
        exercise(service)
    finally:
        service.close()


# ------------------------------------------------------------------------------ symlinks
@pytest.mark.parametrize(
    "name",
    [
        "journal-live.jsonl",
        "audit.jsonl",
        "audit.jsonl.lock",
        "approvals.json",
        "approvals.lock",
        "server.lock",
        "sandbox",
        f"sandbox/{SWAPPINESS}",
        "sandbox/.lumos-sandbox-seeded",
    ],
)
def test_a_symlink_planted_in_the_state_dir_is_refused_and_its_target_untouched(
    fake: FakeKernel, tmp_path: Path, name: str
) -> None:
    mode = "sandbox" if name.startswith("sandbox") else "live"
    state = tmp_path / "state"
    exercise_then_close(fake, state, mode)
    victim = tmp_path / "victim"
    if name == "sandbox":
        victim.mkdir()
        (victim / "x").write_text("precious\n")
    else:
        victim.write_text("precious\n")
    planted = state / name
    if planted.is_dir():
        os.rename(planted, tmp_path / "moved-away")
    else:
        planted.unlink(missing_ok=True)
    planted.symlink_to(victim)
    before = modes(victim) if victim.is_dir() else {".": stat.S_IMODE(victim.stat().st_mode)}

    error = refusal(lambda: started(fake, state, mode))

    assert (error.fields["path"], error.fields["problem"]) == (str(planted), "symlink")
    if victim.is_dir():
        assert sorted(p.name for p in victim.iterdir()) == ["x"]
        assert (victim / "x").read_text() == "precious\n"
    else:
        assert victim.read_text() == "precious\n"
    assert (modes(victim) if victim.is_dir() else {".": stat.S_IMODE(victim.stat().st_mode)}) == before


def test_links_planted_while_the_server_runs_are_never_followed(fake: FakeKernel, tmp_path: Path) -> None:
    state = tmp_path / "state"
    service = started(fake, state)
    try:
        victims = {}
        for name in ("audit.jsonl", "approvals.json", "approvals.lock"):
            victim = tmp_path / f"victim-{name}"
            victim.write_text("precious\n")
            (state / name).unlink(missing_ok=True)
            (state / name).symlink_to(victim)
            victims[name] = victim
        with pytest.raises(StateDirUnsafeError):
            service.audit.append("probe")
        with pytest.raises(StateDirUnsafeError):
            service.approvals.request("tx-1", "d", "s", lifetime_s=60)
        os.unlink(state / "approvals.lock")
        with pytest.raises(StateDirUnsafeError):
            service.approvals.request("tx-1", "d", "s", lifetime_s=60)  # the store file itself is a link
        assert {name: v.read_text() for name, v in victims.items()} == dict.fromkeys(victims, "precious\n")
    finally:
        service.close()


def test_a_link_planted_at_the_audit_log_does_not_stop_a_deadline_revert(fake: FakeKernel, tmp_path: Path) -> None:
    now = [1000.0]
    state = tmp_path / "state"
    service = Service(config(fake, state), clock=lambda: now[0])
    service.start()
    try:
        original = fake.read(SWAPPINESS)
        service.apply(service.stage({"vm.swappiness": 50}, confirm_within_s=5).tx.id)
        victim = tmp_path / "victim"
        victim.write_text("precious\n")
        (state / "audit.jsonl").unlink()
        (state / "audit.jsonl").symlink_to(victim)
        now[0] += 10
        assert len(service.expire_due()) == 1
        assert fake.read(SWAPPINESS) == original  # reverting wins over recording
        assert service.status()["recording_problem"]["audit_records_waiting"] == 1
        assert victim.read_text() == "precious\n"
    finally:
        service.close()


def test_a_journal_link_swapped_in_while_running_is_refused_and_never_followed(
    fake: FakeKernel, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    service = started(fake, state)
    try:
        journal = state / "journal-live.jsonl"
        victim = tmp_path / "victim"
        victim.write_text("precious\n")
        journal.unlink()
        journal.symlink_to(victim)
        opened = service.txns.journal
        with pytest.raises(JournalError):
            opened.rewrite([])
        with pytest.raises(JournalError):
            opened.append({"t": "probe"})
        assert service.status()["journal_problem"] is not None  # sticky, and shown in status
        assert victim.read_text() == "precious\n"
    finally:
        service.close()


def test_a_state_dir_reached_through_a_symlink_in_a_world_writable_dir_is_refused(
    fake: FakeKernel, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (shared / "x").symlink_to(elsewhere)
    error = refusal(lambda: Service(config(fake, shared / "x" / "state")))
    assert (error.fields["path"], error.fields["problem"]) == (str(shared / "x"), "symlink_in_shared_directory")
    assert list(elsewhere.iterdir()) == []  # nothing was created through the link


def test_a_state_dir_that_is_itself_a_symlink_is_refused(fake: FakeKernel, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(real)
    error = refusal(lambda: Service(config(fake, tmp_path / "state")))
    assert (error.fields["path"], error.fields["problem"]) == (str(tmp_path / "state"), "symlink")


def test_a_state_dir_reached_through_a_symlink_in_a_private_dir_is_accepted(fake: FakeKernel, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    started(fake, tmp_path / "link" / "state").close()
    assert (real / "state" / "audit.jsonl").is_file()


def test_a_state_dir_under_a_world_writable_dir_without_sticky_bit_is_refused(fake: FakeKernel, tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)  # anyone may rename what is in it
    error = refusal(lambda: Service(config(fake, open_dir / "state")))
    assert (error.fields["path"], error.fields["problem"]) == (str(open_dir), "parent_writable")


# ------------------------------------------------------------------------------ primitives
def test_open_private_refuses_a_symlink_and_creates_0600_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)
    assert refusal(lambda: open_private(tmp_path / "link", os.O_RDWR)).fields["problem"] == "symlink"
    with umask(0):
        os.close(open_private(tmp_path / "new", os.O_RDWR | os.O_CREAT))
        atomic_write_private(tmp_path / "written", b"data")
        ensure_private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "written").stat().st_mode) == 0o600
    assert [stat.S_IMODE((tmp_path / p).stat().st_mode) for p in ("a", "a/b")] == [0o700, 0o700]


def test_atomic_write_private_replaces_a_planted_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "file").symlink_to(victim)
    atomic_write_private(tmp_path / "file", b"new\n")
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "file").read_bytes() == b"new\n" and not (tmp_path / "file").is_symlink()


def test_check_state_dir_accepts_an_absent_directory(tmp_path: Path) -> None:
    check_state_dir(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_the_audit_log_and_approval_store_refuse_an_unsafe_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    assert refusal(lambda: AuditLog(state / "audit.jsonl")).fields["problem"] == "group_or_world_writable"
    assert refusal(lambda: ApprovalStore(state)).fields["problem"] == "group_or_world_writable"


# ------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("argv", [["recover", "--mode", "live"], ["status"], ["approvals", "list"], ["audit", "tail"]])
def test_the_cli_reports_an_unsafe_state_dir_as_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    code = cli.main([argv[0], "--state-dir", str(state), *argv[1:]])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "state_dir_unsafe" in err and str(state) in err
