"""Storage faults: a torn or corrupt journal, a full disk (also while deadlines fire), a
read-only or missing state directory, and two servers on one state directory.

Each case ends with the same question: is every knob either original or accounted for by the
journal, and did the server refuse new writes with a typed error while it could not journal?
Mounts (tmpfs) need root; without permission a case is skipped and says why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lumos_mcp.errors import AuditError, JournalError, LumosError
from lumos_mcp.selftest.common import Bed, Outcome, make_bed
from lumos_mcp.service import Service

KNOB = "vm.swappiness"
ORIGINAL = 60


def _value(bed: Bed, knob: str = KNOB) -> Any:
    from lumos_mcp.kernelfs.backend import Backend
    from lumos_mcp.kernelfs.root import KernelRoot
    from lumos_mcp.knobs import default_catalog

    return Backend(KernelRoot(bed.tree), default_catalog()).read(knob).value


def _arm(service: Service, value: int = 10) -> str:
    """Stage and apply one change, leaving it armed (a later ``close`` without commit is a crash)."""
    staged = service.stage({KNOB: value})
    service.apply(staged.tx.id)
    return staged.tx.id


def _refused(fn: Callable[[], object]) -> str | None:
    """The error code ``fn`` raised (None: it did not raise)."""
    try:
        fn()
    except LumosError as e:
        return e.code
    return None


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "64k") -> Iterator[Path | None]:
    """A small tmpfs at ``where`` (None when mounting is not permitted); always unmounted."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        for args in (["umount", str(where)], ["umount", "-l", str(where)]):
            if subprocess.run(args, capture_output=True, timeout=20, check=False).returncode == 0:
                break


def _fill(directory: Path) -> Path:
    """Fill the filesystem holding ``directory`` to the last byte."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (4096, 512, 64, 8, 1):
            while True:
                try:
                    if f.write(b"x" * chunk) != chunk:
                        break
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return filler


# --------------------------------------------------------------------------- cases
def torn_tail(base: Path, out: Outcome) -> None:
    bed = make_bed(base)
    first = bed.service()
    _arm(first)
    first.close()  # killed with the change armed
    with open(bed.state_dir / "journal-live.jsonl", "ab") as f:
        f.write(b'{"r":{"t":"commit","tx":"tx-')  # a record whose write never finished
    second = bed.service()
    try:
        report = second.recovery
        assert report is not None
        if not any("torn" in p for p in report.journal_problems):
            out.fail("torn tail: recovery did not report the torn record")
        if _value(bed) != ORIGINAL:
            out.fail(f"torn tail: {KNOB} is {_value(bed)}, not restored to {ORIGINAL}")
        code = _refused(lambda: _arm(second, 20))
        if code is not None:
            out.fail(f"torn tail: a torn (unacknowledged) tail should not stop writes, got {code}")
    finally:
        second.close()
    out.figures["torn_tail"] = "recovered; writes allowed"


def corrupt_middle(base: Path, out: Outcome) -> None:
    bed = make_bed(base)
    first = bed.service()
    _arm(first)
    first.close()
    journal = bed.state_dir / "journal-live.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + b"\x00\xffgarbage \xde\xad\n" + b"".join(lines[1:]))
    second = bed.service()
    try:
        if _value(bed) != ORIGINAL:
            out.fail(f"corrupt journal: {KNOB} is {_value(bed)}, not restored from the intact records")
        before = _value(bed)
        staged = second.stage({KNOB: 30})
        code = _refused(lambda: second.apply(staged.tx.id))
        if code != "journal_unavailable":
            out.fail(f"corrupt journal: apply answered {code}, not journal_unavailable")
        if _value(bed) != before:
            out.fail("corrupt journal: a knob was written while the journal was unusable")
    finally:
        second.close()
    out.figures["corrupt_journal"] = "recovered; writes refused (journal_unavailable)"


def disk_full(base: Path, out: Outcome) -> None:
    with tmpfs(base / "mnt", "64k") as mnt:
        if mnt is None:
            out.skipped.append("disk full: mounting a tmpfs is not permitted here")
            return
        bed = make_bed(base)
        state = mnt / "state"
        service = bed.service(state_dir=state)
        filler: Path | None = None
        try:
            journal = state / "journal-live.jsonl"
            # grow the journal until its last page has a little room: the next record is then
            # written in part (a short write), the case that used to leave a fragment behind
            for i in range(200):
                room = 4096 - journal.stat().st_size % 4096
                if 40 < room < 300:
                    break
                tx = _arm(service, 10 + i % 50)
                service.commit(tx)
            staged = service.stage({KNOB: 77, "vm.dirty_ratio": 33, "vm.dirty_background_ratio": 11})
            size = journal.stat().st_size
            filler = _fill(mnt)
            values = [_value(bed, k) for k in (KNOB, "vm.dirty_ratio")]
            code = _refused(lambda: service.apply(staged.tx.id))
            if code != "journal_unavailable":
                out.fail(f"disk full: apply answered {code}, not journal_unavailable")
            if [_value(bed, k) for k in (KNOB, "vm.dirty_ratio")] != values:
                out.fail("disk full: a knob was written although its original could not be journaled")
            if journal.stat().st_size != size:
                out.fail(f"disk full: a failed append left {journal.stat().st_size - size} bytes in the journal")
            filler.unlink()
            filler = None
            again = service.stage({KNOB: 44})
            service.apply(again.tx.id)  # space again: writes work, then a crash with it armed
        finally:
            service.close()
            if filler is not None:
                filler.unlink()
        after = bed.service(state_dir=state)
        try:
            report = after.recovery
            assert report is not None
            if report.journal_problems:
                out.fail(f"disk full: the journal is damaged after the fault: {report.journal_problems}")
            if _value(bed) != values[0]:
                out.fail(f"disk full: {KNOB} is {_value(bed)} after recovery, the journal says {values[0]}")
        finally:
            after.close()
    out.figures["disk_full"] = "writes refused (journal_unavailable); no fragment; recovered"


@contextlib.contextmanager
def _writes_fail(service: Service) -> Iterator[None]:
    """Every journal and audit append of ``service`` fails as on a full disk (ENOSPC), while open.

    Injected at the two writers rather than by filling a tmpfs: a small append still fits in
    the slack of a file's last page, so a filled tmpfs fails them only by luck."""
    journal = service.txns.journal
    audit_append, journal_append = service.audit.append, journal.append

    def audit_full(event: str, **fields: Any) -> dict[str, Any]:
        raise AuditError("No space left on device", path=str(service.audit.path), errno=errno.ENOSPC)

    def journal_full(record: dict[str, Any]) -> None:
        raise JournalError("append failed: No space left on device", path=str(journal.path))

    service.audit.append = audit_full  # type: ignore[method-assign]
    journal.append = journal_full  # type: ignore[method-assign]
    try:
        yield
    finally:
        service.audit.append = audit_append  # type: ignore[method-assign]
        journal.append = journal_append  # type: ignore[method-assign]


def full_at_deadline(base: Path, out: Outcome) -> None:
    """Journal and audit writes fail while deadlines fire: every change is still reverted on
    time, the records wait (shown in status), and once writes work they are written."""
    bed = make_bed(base)
    now = [time.time()]
    service = bed.service(clock=lambda: now[0])
    reverted = 0
    try:
        for value in (10, 20, 30):  # each deadline fires while writes fail; the next change still reverts
            _arm(service, value)
            now[0] += 3600
            with _writes_fail(service):
                reverted += len(service.expire_due())
                if _value(bed) != ORIGINAL:
                    out.fail(f"full at deadline: {KNOB} is {_value(bed)} after its deadline, not {ORIGINAL}")
                waiting = service.status()["recording_problem"]
                if not waiting or not waiting["journal_records_waiting"] or not waiting["audit_records_waiting"]:
                    out.fail(f"full at deadline: status does not show the records waiting: {waiting}")
            service.expire_due()  # the next tick, writes work again: the records are written
            if service.status()["recording_problem"] is not None:
                out.fail(f"full at deadline: records still waiting: {service.status()['recording_problem']}")
    finally:
        service.close()
    after = bed.service()
    try:
        report = after.recovery
        assert report is not None
        if report.transactions or report.journal_problems:
            out.fail(f"full at deadline: the journal still shows {report.transactions} {report.journal_problems}")
    finally:
        after.close()
    from lumos_mcp.audit import iter_records, verify

    audit = verify(bed.state_dir / "audit.jsonl")
    logged = sum(1 for r in iter_records(bed.state_dir / "audit.jsonl") if r.get("event") == "auto_revert")
    if not audit.ok or logged != 3:
        out.fail(f"full at deadline: audit chain ok={audit.ok}, {logged} of 3 auto_revert records")
    out.figures["full_at_deadline"] = (
        f"{reverted} of 3 deadlines reverted while journal and audit writes failed (ENOSPC); records written later"
    )


def read_only(base: Path, out: Outcome) -> None:
    with tmpfs(base / "mnt", "1m") as mnt:
        if mnt is None:
            out.skipped.append("read-only state dir: mounting a tmpfs is not permitted here")
            return
        bed = make_bed(base)
        state = mnt / "state"
        first = bed.service(state_dir=state)
        _arm(first)
        first.close()  # killed with the change armed
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True, timeout=20, check=False
        )
        if remount.returncode != 0:
            out.skipped.append(f"read-only state dir: remount failed: {remount.stderr.strip()}")
            return
        code: str | None = None
        try:
            service = bed.service(state_dir=state)
            service.close()
        except LumosError as e:
            code = e.code
        if code is None:
            out.fail("read-only state dir: the server started and could not journal")
        if _value(bed) == ORIGINAL:
            out.fail("read-only state dir: a knob was restored without a journal record of it")
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True, timeout=20, check=True)
        after = bed.service(state_dir=state)
        after.close()
        if _value(bed) != ORIGINAL:
            out.fail(f"read-only state dir: {KNOB} is {_value(bed)} after the directory came back")
    out.figures["read_only"] = f"start refused ({code}); journal kept the knob; restored when writable"


def missing_dir(base: Path, out: Outcome) -> None:
    bed = make_bed(base)
    state = base / "gone" / "state"
    service = bed.service(state_dir=state)  # absent at start: created
    try:
        staged = service.stage({KNOB: 25})
        shutil.rmtree(base / "gone")
        code = _refused(lambda: service.apply(staged.tx.id))
        if code != "journal_unavailable":
            out.fail(f"state dir removed: apply answered {code}, not journal_unavailable")
        if _value(bed) != ORIGINAL:
            out.fail("state dir removed: a knob was written with no journal to restore it from")
    finally:
        service.close()
    out.figures["missing_dir"] = "created at start; removed while running: writes refused (journal_unavailable)"


def two_servers(base: Path, out: Outcome) -> None:
    from lumos_mcp.selftest.crash import _package_parent

    state = base / "shared-state"
    env = dict(os.environ, PYTHONPATH=_package_parent())
    env.pop("LUMOS_MCP_TOKEN", None)
    cmd = [sys.executable, "-m", "lumos_mcp", "serve", "--mode", "sandbox", "--state-dir", str(state)]
    first = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        lock = state / "server.lock"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and lock.read_text().split()[:1] == [str(first.pid)]:
                break
            time.sleep(0.05)
        else:
            out.fail("two servers: the first server never took the lock")
            return
        second = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env)
        if second.returncode == 0 or "state_locked" not in second.stderr:
            out.fail(f"two servers: the second started (exit {second.returncode}): {second.stderr[-300:]}")
        elif f"pid {first.pid}" not in second.stderr:
            out.fail(f"two servers: the refusal does not name the first (pid {first.pid}): {second.stderr[-300:]}")
        out.figures["two_servers"] = f"second refused: {second.stderr.strip().splitlines()[-1][:110]}"
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(timeout=15)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait(timeout=15)
        if first.stdin is not None:
            first.stdin.close()
        if first.stderr is not None:
            first.stderr.close()


CASES: dict[str, Callable[[Path, Outcome], None]] = {
    "torn_tail": torn_tail,
    "corrupt_journal": corrupt_middle,
    "disk_full": disk_full,
    "full_at_deadline": full_at_deadline,
    "read_only": read_only,
    "missing_dir": missing_dir,
    "two_servers": two_servers,
}


def run(base: Path) -> Outcome:
    """Every storage case under ``base``; a case that raises is a failure, not a crash of the run."""
    out = Outcome("storage")
    for name, case in CASES.items():
        try:
            case(base / name, out)
        except (LumosError, OSError, subprocess.SubprocessError, AssertionError) as e:
            out.fail(f"{name}: {type(e).__name__}: {e}")
    out.figures["cases"] = len(CASES) - len(out.skipped)
    out.figures["cases_failed"] = len({p.split(":")[0] for p in out.problems})
    return out
