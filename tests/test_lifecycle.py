"""Invariant 11: an armed change is reverted by its deadline whatever happens to the server
that applied it (stdin EOF, SIGTERM, SIGINT, SIGKILL), nothing committed is ever touched,
a failing journal or audit write never stops the clock, and no process is left behind."""

from __future__ import annotations

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
import httpx2
import psutil
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from lumos_mcp import cli
from lumos_mcp.audit import iter_records
from lumos_mcp.errors import AuditError, JournalError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.selftest.common import make_bed
from lumos_mcp.selftest.crash import EXITS, ServerUnderTest, process_gone, wait_until
from lumos_mcp.service import Service
from lumos_mcp.serving import run_until_stopped
from lumos_mcp.txn import TransactionManager, TxState
from lumos_mcp.txn.journal import scan
from tests.http_helpers import free_port

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
SWAPPINESS = "proc/sys/vm/swappiness"


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def no_process_left(tmp_path: Path) -> Iterator[Path]:
    """Fails the test if a watchdog process started under ``tmp_path`` is still alive
    afterwards (and ends it)."""
    yield tmp_path
    wait_until(lambda: not watchdogs_of(tmp_path), 5.0)
    left = watchdogs_of(tmp_path)
    for p in left:
        p.kill()
    assert not left, f"watchdog processes left behind: {[p.pid for p in left]}"


def watchdogs_of(directory: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "lumos_mcp.watchdog" in cmd and any(str(directory) in part for part in cmd) and not process_gone(p.pid):
            found.append(p)
    return found


def open_transactions(journal: Path) -> dict[str, Any]:
    open_txs, _ = TransactionManager._replay(scan(journal).records)
    return open_txs


@pytest.mark.slow
@pytest.mark.parametrize("how", EXITS)
def test_invariant_11_an_armed_change_is_reverted_by_its_deadline_however_the_server_ends(
    no_process_left: Path, how: str
) -> None:
    server = ServerUnderTest(no_process_left / "server", confirm_s=3.0)
    server.wait_ready()
    try:
        assert server.value() == "30"
        assert server.watchdog_pid is not None
        server.end(how)
        back = wait_until(lambda: server.value() == "60", server.deadline + 2.0 - time.time())
        assert back, f"{how}: swappiness still {server.value()} at deadline + 2 s"
        assert wait_until(lambda: server.proc.poll() is not None, 5.0)
    finally:
        server.stop()
    assert server.proc.returncode == (-signal.SIGKILL if how == "sigkill" else 0), server.stderr()[-2000:]
    assert wait_until(lambda: process_gone(server.watchdog_pid or 0), 5.0), "the watchdog outlived its work"
    assert open_transactions(server.bed.state_dir / "journal-live.jsonl") == {}
    records = [r for r in iter_records(server.bed.state_dir / "audit.jsonl") if r.get("tx") == server.txid]
    reverts = [r for r in iter_records(server.bed.state_dir / "audit.jsonl") if r["event"] == "recovery"]
    if how == "sigkill":
        assert any(r.get("by") == "watchdog" and server.txid in r["transactions"] for r in reverts)
    else:
        assert [r["reason"] for r in records if r["event"] == "auto_revert"] == ["server_exit"]


@pytest.mark.slow
@pytest.mark.parametrize("second_server_running", [False, True])
def test_a_change_committed_by_another_server_after_a_sigkill_is_not_reverted_by_the_watchdog(
    no_process_left: Path, second_server_running: bool
) -> None:
    server = ServerUnderTest(no_process_left / "server", confirm_s=60.0)
    server.wait_ready()
    watchdog = server.watchdog_pid
    assert watchdog is not None
    os.kill(watchdog, signal.SIGSTOP)  # the watchdog lags: a new server comes first
    second: Service | None = None
    try:
        server.end("sigkill")
        server.stop()
        second = server.bed.service()  # recovers the dead server's change at start
        assert server.value() == "60"
        staged = second.stage({"vm.swappiness": 40})
        second.apply(staged.tx.id)
        second.commit(staged.tx.id)
        if not second_server_running:
            second.close()
    finally:
        os.kill(watchdog, signal.SIGCONT)
    try:
        assert wait_until(lambda: process_gone(watchdog), 10.0)
    finally:
        if second is not None:
            second.close()
    assert server.value() == "40"
    assert open_transactions(server.bed.state_dir / "journal-live.jsonl") == {}


def test_a_running_server_leaves_no_watchdog_once_nothing_is_armed(no_process_left: Path) -> None:
    bed = make_bed(no_process_left / "bed")
    service = bed.service(watchdog=True)
    try:
        staged = service.stage({"vm.swappiness": 40}, confirm_within_s=30)
        service.apply(staged.tx.id)
        watchdog = service.watchdog_pid
        assert watchdog is not None and not process_gone(watchdog)
        service.commit(staged.tx.id)
        service._sync_watchdog()  # what the deadline loop does at each tick
        assert service.watchdog_pid is None
        assert wait_until(lambda: process_gone(watchdog), 5.0)
    finally:
        service.close()
    assert (bed.tree / SWAPPINESS).read_text().strip() == "40"


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
    policy: Path, fake: FakeKernel, make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(policy=str(policy))
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
    policy: Path, fake: FakeKernel, make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    service = make_service(policy=str(policy), clock=lambda: now[0])
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
    assert open_transactions(service.txns.journal_path) == {}


# --------------------------------------------------------------------------- recover without --mode
def test_recover_without_mode_restores_a_live_crash(
    tmp_path: Path,
    policy: Path,
    fake: FakeKernel,
    make_service: Callable[..., Service],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    crashed = make_service(mode="live", policy=str(policy), state_dir=state)
    staged = crashed.stage({"vm.swappiness": 30})
    crashed.apply(staged.tx.id)
    crashed.close()  # as a crash leaves it: armed in the journal, the knob changed
    assert (fake.base / SWAPPINESS).read_text().strip() == "30"
    original = cli._config
    monkeypatch.setattr(
        cli,
        "_config",
        lambda args, mode=None: replace(
            original(args, mode), host_root=fake.base, telemetry_root=Path("/"), perf=False, policy=policy
        ),
    )
    assert cli.main(["recover", "--state-dir", str(state)]) == 0
    assert (fake.base / SWAPPINESS).read_text().strip() == "60"
    assert "live: recovered 1 transaction(s)" in capsys.readouterr().out
    assert cli.main(["recover", "--state-dir", str(state)]) == 0
    assert "nothing to recover" in capsys.readouterr().out


# --------------------------------------------------------------------------- serve in a terminal
@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_says_what_it_serves_and_stops_on_ctrl_c_or_sigterm(no_process_left: Path, stop: signal.Signals) -> None:
    tmp_path = no_process_left
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != "LUMOS_MCP_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lumos_mcp", "serve", "--mode", "sandbox", "--state-dir", str(state)],
        stdin=subprocess.PIPE,  # a terminal that never sends EOF
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None and proc.stdin is not None
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        said = b""
        until = time.monotonic() + 60
        while b"serving MCP" not in said and proc.poll() is None and time.monotonic() < until:
            said += proc.stderr.read() or b""
            time.sleep(0.02)
        assert b"serving MCP over stdio" in said
        assert b"sandbox mode" in said and str(state).encode() in said
        proc.send_signal(stop)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdin.close()
        proc.stderr.close()


@pytest.mark.slow
@pytest.mark.anyio
async def test_an_http_server_stopped_by_sigterm_reverts_what_an_agent_applied(
    no_process_left: Path, policy: Path
) -> None:
    tmp_path = no_process_left
    state, port, token = tmp_path / "state", free_port(), "lifecycle-token-0123456789"
    env = {**os.environ, "LUMOS_STATE_DIR": str(state), "LUMOS_MCP_TOKEN": token}
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lumos_mcp", "serve", "--http", "--port", str(port), "--policy", str(policy)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    knob = state / "sandbox" / SWAPPINESS
    try:
        with anyio.fail_after(60):
            while True:
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.1)
            original = knob.read_text().strip()
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
            url = f"http://127.0.0.1:{port}/mcp"
            async with http, Client(streamable_http_client(url, http_client=http)) as client:
                target = 40 if original != "40" else 50
                staged = await client.call_tool("stage_sched_params", {"changes": {"vm.swappiness": target}})
                assert staged.structured_content is not None and staged.structured_content["allowed"]
                applied = await client.call_tool("apply", {"txid": staged.structured_content["txid"]})
                assert applied.structured_content is not None and applied.structured_content["state"] == "applied"
        assert knob.read_text().strip() == str(target)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert knob.read_text().strip() == original
    reverts = [r for r in iter_records(state / "audit.jsonl") if r["event"] == "auto_revert"]
    assert [r["reason"] for r in reverts] == ["server_exit"]


def test_an_unhandled_error_in_serve_reverts_every_armed_change_and_keeps_the_committed_one(
    policy: Path, fake: FakeKernel, make_service: Callable[..., Service]
) -> None:
    policy.write_text(POLICY + '[knobs."vm.dirty_ratio"]\nmin = 1\nmax = 90\napproval = "never"\n')
    service = make_service(policy=str(policy))
    kept = service.stage({"vm.dirty_ratio": 30})
    service.apply(kept.tx.id)
    service.commit(kept.tx.id)
    armed = service.stage({"vm.swappiness": 30})
    service.apply(armed.tx.id)

    async def broken_transport() -> None:
        raise RuntimeError("transport failed")

    with pytest.raises(RuntimeError):
        run_until_stopped(service, broken_transport, "lumos-mcp: test server")
    assert (fake.base / SWAPPINESS).read_text().strip() == "60"
    assert (fake.base / "proc/sys/vm/dirty_ratio").read_text().strip() == "30"
    assert service.txns.get(armed.tx.id).outcome == "server_exit"
    assert service.txns.get(kept.tx.id).state is TxState.COMMITTED


@pytest.mark.slow
def test_a_live_change_of_a_killed_server_is_restored_while_a_sandbox_server_holds_the_state_dir(
    no_process_left: Path,
) -> None:
    server = ServerUnderTest(no_process_left / "server", confirm_s=60.0)
    server.wait_ready()
    watchdog = server.watchdog_pid
    assert watchdog is not None
    os.kill(watchdog, signal.SIGSTOP)  # the watchdog lags: a sandbox server takes the state dir first
    sandbox: Service | None = None
    try:
        server.end("sigkill")
        server.stop()
        sandbox = Service(replace(server.bed.config(), mode="sandbox"))
        sandbox.start()  # recovers the sandbox journal only: the live change is still on the host
        assert server.value() == "30"
    finally:
        os.kill(watchdog, signal.SIGCONT)
    try:
        assert wait_until(lambda: server.value() == "60", 5.0)
        assert wait_until(lambda: process_gone(watchdog), 5.0)
    finally:
        if sandbox is not None:
            sandbox.close()
    assert open_transactions(server.bed.state_dir / "journal-live.jsonl") == {}
