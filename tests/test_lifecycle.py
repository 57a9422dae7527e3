"""Invariant 11: an armed change is reverted by its deadline whatever happens to the server
that applied it (stdin EOF, SIGTERM, SIGINT, SIGKILL), nothing committed is ever touched,
a failing journal or audit write never stops the clock, and no process is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from lumos_mcp import cli
from lumos_mcp.audit import iter_records
from lumos_mcp.errors import AuditError, JournalError
from lumos_mcp.kernelfs.fake import FakeKernel, typical_host
from lumos_mcp.service import Service
from lumos_mcp.txn import TransactionManager, TxState
from lumos_mcp.txn.journal import scan
from tests.serve_worker import config

WORKER = Path(__file__).with_name("serve_worker.py")
SWAPPINESS = "proc/sys/vm/swappiness"
POLICY = """
name = "lifecycle-test"
[global]
confirm_within_s = 60
max_confirm_within_s = 600
commits_per_hour = 1000
[knobs."vm.swappiness"]
min = 0
max = 200
approval = "never"
"""


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes (a bounded wait)."""
    until = time.monotonic() + max(timeout_s, 0.0)
    while True:
        if condition():
            return True
        if time.monotonic() >= until:
            return False
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def watchdogs_of(directory: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "lumos_mcp.watchdog" in cmd and any(str(directory) in part for part in cmd) and not gone(p.pid):
            found.append(p)
    return found


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Path]:
    """A directory with a fake kernel tree and a permissive policy; fails the test if a
    watchdog process of it is still alive afterwards (and ends it)."""
    typical_host(tmp_path / "kernel")
    (tmp_path / "policy.toml").write_text(POLICY)
    yield tmp_path
    wait_until(lambda: not watchdogs_of(tmp_path), 5.0)
    left = watchdogs_of(tmp_path)
    for p in left:
        p.kill()
    assert not left, f"watchdog processes left behind: {[p.pid for p in left]}"


def swappiness(directory: Path) -> str:
    return (directory / "kernel" / SWAPPINESS).read_text().strip()


def start_server(directory: Path, confirm_s: float) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """A real server process that has applied swappiness 60 -> 30 with a ``confirm_s`` deadline."""
    with open(directory / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(directory), str(confirm_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    ready = directory / "ready.json"
    if not wait_until(lambda: ready.exists() or proc.poll() is not None, 30.0) or not ready.exists():
        proc.kill()
        proc.wait(5)
        if proc.stdin is not None:
            proc.stdin.close()
        pytest.fail(f"server did not start: {(directory / 'stderr').read_text()[-2000:]}")
    info: dict[str, Any] = json.loads(ready.read_text())
    return proc, info


def open_transactions(directory: Path) -> dict[str, Any]:
    open_txs, _ = TransactionManager._replay(scan(directory / "state" / "journal-live.jsonl").records)
    return open_txs


def end(proc: subprocess.Popen[bytes], how: str) -> None:
    if how == "eof":
        assert proc.stdin is not None
        proc.stdin.close()
    else:
        proc.send_signal({"sigterm": signal.SIGTERM, "sigint": signal.SIGINT, "sigkill": signal.SIGKILL}[how])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["eof", "sigterm", "sigint", "sigkill"])
def test_invariant_11_an_armed_change_is_reverted_by_its_deadline_however_the_server_ends(bed: Path, how: str) -> None:
    proc, info = start_server(bed, confirm_s=3.0)
    try:
        assert swappiness(bed) == "30"
        assert info["watchdog_pid"] is not None
        end(proc, how)
        back = wait_until(lambda: swappiness(bed) == "60", info["deadline"] + 2.0 - time.time())
        assert back, f"{how}: swappiness still {swappiness(bed)} at deadline + 2 s"
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdin is not None:
            proc.stdin.close()
    assert proc.returncode == (-signal.SIGKILL if how == "sigkill" else 0), (bed / "stderr").read_text()[-2000:]
    assert wait_until(lambda: gone(info["watchdog_pid"]), 5.0), "the watchdog outlived its work"
    assert open_transactions(bed) == {}
    events = [r for r in iter_records(bed / "state" / "audit.jsonl") if r.get("event") in ("auto_revert", "recovery")]
    if how == "sigkill":
        assert any(r["event"] == "recovery" and r.get("by") == "watchdog" for r in events)
    else:
        assert [r["reason"] for r in events if r["event"] == "auto_revert" and r["tx"] == info["tx"]] == ["server_exit"]


@pytest.mark.slow
@pytest.mark.parametrize("second_server_running", [False, True])
def test_a_change_committed_by_another_server_after_a_sigkill_is_not_reverted_by_the_watchdog(
    bed: Path, second_server_running: bool
) -> None:
    proc, info = start_server(bed, confirm_s=60.0)
    watchdog = info["watchdog_pid"]
    os.kill(watchdog, signal.SIGSTOP)  # the watchdog lags: a new server comes first
    try:
        proc.kill()
        proc.wait(5)
        second = Service(config(bed))
        second.start()  # recovers the dead server's change
        assert swappiness(bed) == "60"
        staged = second.stage({"vm.swappiness": 40})
        second.apply(staged.tx.id)
        second.commit(staged.tx.id)
        if not second_server_running:
            second.close()
    finally:
        os.kill(watchdog, signal.SIGCONT)
    try:
        assert wait_until(lambda: gone(watchdog), 10.0)
    finally:
        second.close()
        if proc.stdin is not None:
            proc.stdin.close()
    assert swappiness(bed) == "40"
    assert open_transactions(bed) == {}


@pytest.mark.slow
def test_a_server_kept_running_leaves_no_watchdog_once_nothing_is_armed(bed: Path) -> None:
    second = Service(replace(config(bed), watchdog=True))
    second.start()
    try:
        staged = second.stage({"vm.swappiness": 40}, confirm_within_s=30)
        second.apply(staged.tx.id)
        watchdog = second.watchdog_pid
        assert watchdog is not None and not gone(watchdog)
        second.commit(staged.tx.id)
        second._sync_watchdog()  # what the deadline loop does at each tick
        assert second.watchdog_pid is None
        assert wait_until(lambda: gone(watchdog), 5.0)
    finally:
        second.close()
    assert swappiness(bed) == "40"


# --------------------------------------------------------------------------- item 2: the clock never stops
class Failing:
    """Makes a writer fail (like a full disk) while ``on`` is set."""

    def __init__(self, original: Callable[..., Any], error: Exception, when: Callable[..., bool]) -> None:
        self.original, self.error, self.when, self.on, self.refused = original, error, when, True, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.on and self.when(*args, **kwargs):
            self.refused += 1
            raise self.error
        return self.original(*args, **kwargs)


@pytest.mark.anyio
async def test_a_failing_audit_write_at_a_deadline_does_not_stop_the_next_revert(
    bed: Path, fake: FakeKernel, make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(policy=str(bed / "policy.toml"))
    path = fake.base / SWAPPINESS
    failing = Failing(service.audit.append, AuditError("disk full"), lambda event, **_: event == "auto_revert")
    monkeypatch.setattr(service.audit, "append", failing)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run_deadlines, 0.02)
            for value in (30, 40):
                staged = service.stage({"vm.swappiness": value}, confirm_within_s=0.2)
                service.apply(staged.tx.id)
                while path.read_text().strip() != "60":
                    await anyio.sleep(0.02)
            assert failing.refused >= 2
            status = service.status()
            assert status["recording_problem"]["audit_records_waiting"] == 2
            assert status["journal_problem"] is not None  # what the MCP layer shows
            failing.on = False
            while service.status()["recording_problem"] is not None:
                await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    reverts = [r for r in iter_records(service.audit.path) if r["event"] == "auto_revert"]
    assert [r["reason"] for r in reverts] == ["deadline", "deadline"]
    assert service.status()["journal_problem"] is None


def test_a_failing_journal_write_at_a_deadline_still_reverts_and_records_it_later(
    bed: Path, fake: FakeKernel, make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    service = make_service(policy=str(bed / "policy.toml"), clock=lambda: now[0])
    staged = service.stage({"vm.swappiness": 30}, confirm_within_s=5)
    service.apply(staged.tx.id)
    journal = service.txns.journal
    failing = Failing(journal.append, JournalError("no space", path="journal"), lambda record: True)
    monkeypatch.setattr(journal, "append", failing)
    now[0] += 10
    [reverted] = service.expire_due()
    assert (fake.base / SWAPPINESS).read_text().strip() == "60"
    assert reverted.state is TxState.REVERTED
    assert service.status()["recording_problem"]["journal_records_waiting"] == 1
    failing.on = False
    service.expire_due()  # the next tick writes what waited
    assert service.status()["recording_problem"] is None
    assert open_transactions_in(service) == {}


def open_transactions_in(service: Service) -> dict[str, Any]:
    open_txs, _ = TransactionManager._replay(scan(service.txns.journal_path).records)
    return open_txs


# --------------------------------------------------------------------------- recover without --mode
def test_recover_without_mode_restores_a_live_crash(
    bed: Path,
    fake: FakeKernel,
    make_service: Callable[..., Service],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = bed / "state"
    crashed = make_service(mode="live", policy=str(bed / "policy.toml"), state_dir=state)
    staged = crashed.stage({"vm.swappiness": 30})
    crashed.apply(staged.tx.id)
    crashed.close()  # as a crash leaves it: armed in the journal, the knob changed
    assert (fake.base / SWAPPINESS).read_text().strip() == "30"
    original = cli._config
    monkeypatch.setattr(
        cli,
        "_config",
        lambda args, mode=None: replace(
            original(args, mode), host_root=fake.base, telemetry_root=Path("/"), perf=False, policy=bed / "policy.toml"
        ),
    )
    assert cli.main(["recover", "--state-dir", str(state)]) == 0
    assert (fake.base / SWAPPINESS).read_text().strip() == "60"
    assert "live: recovered 1 transaction(s)" in capsys.readouterr().out
    assert cli.main(["recover", "--state-dir", str(state)]) == 0
    assert "nothing to recover" in capsys.readouterr().out
