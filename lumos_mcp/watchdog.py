"""The deadline's keeper when the server is gone (SIGKILL, OOM kill, a crash past every handler).

A clean exit (stdin EOF, SIGTERM, SIGINT, an unhandled error) reverts every armed change in the
server itself (`Service.shutdown`). Nothing in a process survives SIGKILL, so the first apply
that arms a deadline also starts this small process, detached (new session, stdio on
/dev/null, so a host that kills the server's process group does not take it along):

    python -m lumos_mcp.watchdog --fd N --server-pid P --state-dir D --mode M --kernel-root K

The server holds the only write end of a pipe whose read end is ``N``. While armed changes
exist the server keeps it open. When none is left it writes ``q`` and closes it: the watchdog
exits. If the pipe reaches EOF without ``q``, the server is gone (the kernel closes a dead
process's descriptors, whatever killed it), and the watchdog:

1. takes the state directory's ``server.lock`` (waiting while the dead server's pid is still
   written there: its descriptors close one by one). A lock held by a new server of the same
   mode means that server's start-up recovery has already restored everything uncommitted:
   the watchdog exits without touching anything. A new server of another mode never touches
   this mode's journal, so the watchdog goes on without ``server.lock``;
2. under the mode's ``recovery-<mode>.lock`` (which a starting server also takes, so the two
   never recover one journal at once), runs `TransactionManager.recover` on the mode's
   journal, read afresh: every
   begun-but-uncommitted transaction of the dead server is restored, journaled and audited
   (``recovery`` record, ``by: watchdog``). A change committed meanwhile by another server is
   committed in the journal, so it is never touched;
3. exits.

It reverts at once rather than at each deadline: no process can commit a dead server's change
(the next server's start-up recovery reverts it anyway), so waiting would only keep an
unconfirmed change on the host longer, and the act is exactly start-up recovery, the path the
crash tests kill at every probe. It is crash-safe for the same reason: killed itself, it leaves
the journal saying what is open, and the next start (or the next watchdog) recovers.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lumos_mcp.privfs import open_private

QUIT = b"q"
LOCK_WAIT_S = 10.0
"""How long the watchdog waits for the dead server's lock to be released (it is released when
the kernel closes the server's descriptors, normally within milliseconds)."""
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class Watchdog:
    """The server's handle on its watchdog process: started while changes are armed."""

    def __init__(self, state_dir: Path, mode: str, kernel_root: Path) -> None:
        self.state_dir = state_dir
        self.mode = mode
        self.kernel_root = kernel_root
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._released: list[subprocess.Popen[bytes]] = []

    @property
    def pid(self) -> int | None:
        """The running watchdog's pid (None when none is running)."""
        return self._proc.pid if self._proc is not None and self._fd is not None else None

    def ensure(self) -> None:
        """Make sure a watchdog is watching (start one, or a new one if it died).

        Raises:
            OSError: the pipe or the process could not be made.
        """
        self._reap()
        if self._proc is not None and self._fd is not None and self._proc.poll() is None:
            return
        self._drop_pipe()
        read_end, write_end = os.pipe()  # both close-on-exec: only the watchdog gets the read end
        try:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lumos_mcp.watchdog",
                    "--fd",
                    str(read_end),
                    "--server-pid",
                    str(os.getpid()),
                    "--state-dir",
                    str(self.state_dir.resolve()),
                    "--mode",
                    self.mode,
                    "--kernel-root",
                    str(self.kernel_root),
                ],
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
                env=env,
            )
        except OSError:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._fd = write_end

    def release(self) -> None:
        """Nothing is armed any more: tell the watchdog to exit (it is reaped later)."""
        self._reap()
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # it died already: nothing to tell
            os.write(self._fd, QUIT)
        self._drop_pipe()

    def close(self, armed: bool, wait_s: float = 2.0) -> None:
        """The server is closing. With nothing armed the watchdog is told to exit; with changes
        still armed it is only left alone, so it restores them once this process is gone."""
        if armed:
            # not waited for: it restores them once this process (and its lock) is gone
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._proc = None
        else:
            self.release()
        deadline = time.monotonic() + wait_s
        for proc in self._released:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        self._reap()

    def _drop_pipe(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._proc is not None:
            self._released.append(self._proc)
            self._proc = None

    def _reap(self) -> None:
        self._released = [p for p in self._released if p.poll() is None]


# --------------------------------------------------------------------------- the process
def lock_owner(fd: int) -> tuple[str, str]:
    """The pid and role (a server's mode, or ``watchdog``) that ``server.lock``'s holder wrote."""
    pid, _, role = os.pread(fd, 64, 0).decode(errors="replace").strip().partition(" ")
    return pid or "unknown", role or "unknown"


def write_lock_owner(fd: int, role: str) -> None:
    """Say in a lock just taken who holds it (this process, as ``role``), for ``lock_owner``."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {role}".encode(), 0)


def mode_lock_path(state_dir: Path, mode: str) -> Path:
    """The lock whose holder may recover (and so rewrite) ``mode``'s journal: a starting server
    and a watchdog both take it, so they never recover one journal at the same time."""
    return state_dir / f"recovery-{mode}.lock"


def take_lock(path: Path, timeout_s: float, keep_waiting: Callable[[int], bool] = lambda fd: True) -> int | None:
    """``path``'s flock, polling while ``keep_waiting(fd)`` says so, for up to ``timeout_s``;
    None when not taken."""
    fd = open_private(path, os.O_RDWR | os.O_CREAT)  # never a planted link
    until = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > until or not keep_waiting(fd):
                os.close(fd)
                return None
            time.sleep(0.02)


def recover_for_dead_server(state_dir: Path, mode: str, kernel_root: Path, server_pid: int) -> bool:
    """Restore what the dead server left armed, under the state directory's lock.

    The lock is released by the kernel as the dead server's descriptors close. If another
    process holds it, a new server started: one of the same mode recovered at start, so
    there is nothing to do (False); one of another mode never touches this mode's journal,
    so recovery goes on under this mode's recovery lock alone.

    Raises:
        JournalError, AuditError: the journal or the audit log cannot be used.
    """
    holder: list[str] = []

    def dead_server_still_listed(fd: int) -> bool:
        pid, holder_mode = lock_owner(fd)
        holder[:] = [pid, holder_mode]
        return pid == str(server_pid)

    state_lock = take_lock(state_dir / "server.lock", LOCK_WAIT_S, dead_server_still_listed)
    if state_lock is None and (not holder or holder[0] == str(server_pid) or holder[1] == mode):
        return False  # a server of this mode runs (it recovered at start), or the lock never freed
    try:
        if state_lock is not None:
            write_lock_owner(state_lock, "watchdog")  # a starting server waits for it
        mode_lock = take_lock(mode_lock_path(state_dir, mode), LOCK_WAIT_S)
        if mode_lock is None:
            return False
        try:
            _recover(state_dir, mode, kernel_root, server_pid)
        finally:
            os.close(mode_lock)
        return True
    finally:
        if state_lock is not None:
            os.close(state_lock)  # also releases the flock


def _recover(state_dir: Path, mode: str, kernel_root: Path, server_pid: int) -> None:
    from lumos_mcp.audit import AuditLog
    from lumos_mcp.kernelfs.backend import Backend
    from lumos_mcp.kernelfs.root import KernelRoot
    from lumos_mcp.knobs import default_catalog
    from lumos_mcp.txn import TransactionManager

    manager = TransactionManager(
        Backend(KernelRoot(kernel_root), default_catalog()), state_dir / f"journal-{mode}.jsonl"
    )
    try:
        report = manager.recover()
    finally:
        manager.close()
    if report.transactions or report.journal_problems:
        AuditLog(state_dir / "audit.jsonl").append(
            "recovery",
            mode=mode,
            by="watchdog",
            reason="server_gone",
            server_pid=server_pid,
            transactions=list(report.transactions),
            knobs=[{"knob": r.knob, "action": r.action, "detail": r.detail} for r in report.knobs],
            committed_kept=report.committed_kept,
            journal_problems=list(report.journal_problems),
        )


def wait_for_server(fd: int) -> bool:
    """Block until the server releases us (True) or is gone (False: EOF without ``q``)."""
    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
        if not data:
            return False
        if QUIT in data:
            return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lumos_mcp.watchdog", description=__doc__.split("\n\n")[0])
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--kernel-root", type=Path, required=True)
    args = p.parse_args(argv)
    if wait_for_server(args.fd):
        return 0
    from lumos_mcp.errors import LumosError

    try:
        recover_for_dead_server(args.state_dir, args.mode, args.kernel_root, args.server_pid)
    except LumosError:
        return 1  # the journal still says what is open: the next start recovers it
    return 0


if __name__ == "__main__":
    sys.exit(main())
