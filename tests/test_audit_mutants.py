"""Gaps of the audit log that mutation testing found: what each refusal and I/O error carries,
records longer than the tail scanner's read block, and the exact report of a failed verify."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from lumos_mcp.audit import PRUNED_EVENT, TORN_EVENT, AuditLog, format_record, iter_records, rotated_files, tail, verify
from lumos_mcp.errors import AuditError, StateDirUnsafeError


def audit_error(call: Callable[[], Any]) -> AuditError:
    with pytest.raises(AuditError) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    ("event", "fields"),
    [("Bad-Event", {}), ("stage", {"seq": 1}), ("stage", {"hash": "x", "prev": "y"}), ("stage", {"v": object()})],
)
def test_a_refused_append_names_the_log_and_says_why(tmp_path: Path, event: str, fields: dict[str, Any]) -> None:
    path = tmp_path / "audit.jsonl"
    err = audit_error(lambda: AuditLog(path).append(event, **fields))
    assert (err.code, err.fields["path"]) == ("audit_error", str(path))
    assert isinstance(err.detail, str) and err.detail


@pytest.mark.parametrize("reader", [lambda p: list(iter_records(p)), lambda p: tail(p, 3), verify])
def test_reading_a_missing_log_raises_audit_error_naming_it(tmp_path: Path, reader: Callable[[Path], Any]) -> None:
    path = tmp_path / "missing.jsonl"
    err = audit_error(lambda: reader(path))
    assert (err.code, err.fields["path"]) == ("audit_error", str(path))
    assert isinstance(err.detail, str) and err.detail


def test_tail_of_one_returns_only_the_last_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(5):
        log.append("stage", i=i)
    assert [r["i"] for r in tail(path, 1)] == [4]
    assert tail(path, -1) == []


@pytest.mark.parametrize("size", [70_000, 300_000, 1_200_000])
def test_a_writer_chains_after_a_last_record_longer_than_its_read_blocks(tmp_path: Path, size: int) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append("stage", i=0)
    big = log.append("stage", blob="x" * size)
    after = AuditLog(path).append("commit")  # a new writer must find the big record by scanning back
    assert (after["seq"], after["prev"]) == (big["seq"] + 1, big["hash"])
    assert [r["event"] for r in tail(path, 2)] == ["stage", "commit"]
    assert verify(path).ok


def test_a_torn_tail_after_a_long_record_is_acknowledged_at_its_exact_offset(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    big = log.append("stage", blob="y" * 100_000)
    good_end = path.stat().st_size
    with path.open("ab") as f:
        f.write(b'{"seq": 3, "torn')
    ack = AuditLog(path).append("commit")
    records = list(iter_records(path))
    torn = records[1]
    assert torn["event"] == TORN_EVENT
    assert (torn["torn_offset"], torn["torn_bytes"], torn["prev"]) == (good_end, 16, big["hash"])
    assert ack["prev"] == torn["hash"]
    report = verify(path)
    assert report.ok and report.torn_lines == (2,) and report.records == 3


def test_a_failed_verify_reports_the_head_and_count_before_the_break(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    recs = [log.append("stage", i=i) for i in range(4)]
    lines = path.read_bytes().splitlines(keepends=True)
    edited = orjson.loads(lines[2])
    edited["i"] = 99
    lines[2] = orjson.dumps(edited) + b"\n"
    path.write_bytes(b"".join(lines))
    report = verify(path)
    assert (report.ok, report.records, report.line, report.seq, report.head, report.torn_lines) == (
        False,
        2,
        3,
        3,
        recs[1]["hash"],
        (),
    )


def test_verify_with_a_head_it_never_meets_reports_truncation_with_the_real_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    recs = [log.append("stage", i=i) for i in range(3)]
    report = verify(path, head="f" * 64)
    assert (report.ok, report.problem, report.records, report.head, report.line) == (
        False,
        "deleted",
        3,
        recs[-1]["hash"],
        None,
    )
    assert verify(path, head=recs[0]["hash"]).ok


def test_a_log_whose_directory_cannot_be_made_is_refused_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = blocker / "sub" / "audit.jsonl"
    with pytest.raises(StateDirUnsafeError) as info:
        AuditLog(path)
    assert (info.value.code, info.value.fields["path"], info.value.fields["problem"]) == (
        "state_dir_unsafe",
        str(path.parent),
        "unusable",
    )


def _edit_line(path: Path, index: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    rec = orjson.loads(lines[index])
    rec["edited"] = True
    lines[index] = orjson.dumps(rec) + b"\n"
    path.write_bytes(b"".join(lines))


def test_every_failed_verify_says_why_in_its_detail(tmp_path: Path) -> None:
    reports = []
    for case in ("edited", "not_json", "torn"):
        path = tmp_path / f"{case}.jsonl"
        log = AuditLog(path)
        for i in range(3):
            log.append("stage", i=i)
        if case == "edited":
            _edit_line(path, 1)
        elif case == "not_json":
            lines = path.read_bytes().splitlines(keepends=True)
            path.write_bytes(lines[0] + b"garbage\n" + b"".join(lines[1:]))
        else:
            with path.open("ab") as f:
                f.write(b'{"seq": 4')
        reports.append(verify(path))
    assert [r.problem for r in reports] == ["edited", "not_json", "torn"]
    for report in reports:
        assert isinstance(report.detail, str) and report.detail


def test_a_break_after_an_acknowledged_torn_region_still_lists_that_region(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append("stage", i=0)
    with path.open("ab") as f:
        f.write(b'{"torn')
    log = AuditLog(path)  # acknowledges the torn bytes (line 2, record on line 3)
    log.append("stage", i=1)
    log.append("stage", i=2)
    _edit_line(path, 3)
    report = verify(path)
    assert (report.ok, report.problem, report.line, report.torn_lines) == (False, "edited", 4, (2,))


def test_an_append_whose_write_fails_raises_audit_error_with_path_and_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    err = audit_error(lambda: log.append("stage"))
    assert (err.code, err.fields["path"], err.fields["errno"]) == ("audit_error", str(path), errno.EIO)


def test_a_fifo_in_place_of_the_log_is_refused_and_never_written(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    os.mkfifo(path, 0o600)
    with pytest.raises(StateDirUnsafeError) as info:
        AuditLog(path).append("stage")
    assert (info.value.fields["path"], info.value.fields["problem"]) == (str(path), "not_a_regular_file")


def test_a_truncation_report_still_lists_acknowledged_torn_regions(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append("stage", i=0)
    with path.open("ab") as f:
        f.write(b'{"torn')
    AuditLog(path).append("stage", i=1)
    report = verify(path, head="e" * 64)
    assert (report.ok, report.problem, report.torn_lines) == (False, "deleted", (2,))


# ------------------------------------------------- gaps the audit run of issue 21 found (rotation, tail scan, format)
def _probe(log: AuditLog, i: int) -> None:
    log.append("probe", i=i, pad="x" * 100)


def test_rotated_files_grow_to_keep_files_and_then_stay_exactly_there(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=1024, keep_files=3)
    counts = []
    for i in range(150):
        _probe(log, i)
        counts.append(len(rotated_files(path)))
    reached = counts.index(3)
    assert counts[:reached] == sorted(counts[:reached]) and max(counts[:reached]) == 2
    assert set(counts[reached:]) == {3}  # never fewer, never more, after the first prune
    assert verify(path).ok


def test_the_pruned_record_names_exactly_the_files_it_deleted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=1024, keep_files=2)
    seen: set[str] = set()
    for i in range(80):
        _probe(log, i)
        seen |= {p.name for p in rotated_files(path)}
    kept = {p.name for p in rotated_files(path)}
    named = [name for r in iter_records(path) if r["event"] == PRUNED_EVENT for name in r["files"]]
    # the records still in the log name the files deleted since the oldest file kept was written
    assert named and set(named) <= seen - kept and not any(tmp_path.joinpath(n).exists() for n in named)


def _live_records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_rotated_file_without_a_record_is_not_deleted_without_a_pruned_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    junk = path.with_name("audit.jsonl.1")
    junk.write_bytes(b"not a record\n")
    junk.chmod(0o600)
    log = AuditLog(path, max_bytes=1024, keep_files=1)
    for i in range(30):  # up to the first rotation
        _probe(log, i)
        if path.with_name("audit.jsonl.2").exists():
            break
    assert path.with_name("audit.jsonl.2").exists()
    # beyond keep_files, but no record in it to vouch for: it stays, and verify reports it
    assert junk.exists() and not any(r["event"] == PRUNED_EVENT for r in iter_records(path))
    assert verify(path).file == str(junk)


def test_a_torn_repair_that_reaches_the_limit_sends_the_record_to_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path, clock=lambda: 1000.5).append("stage", i=0)
    with path.open("ab") as f:
        f.write(b'{"seq": 2, "torn')
    torn_state = path.read_bytes()
    log = AuditLog(path, clock=lambda: 1000.5, max_bytes=1 << 20)  # repairs: measures what the repair adds
    repaired = path.stat().st_size
    path.write_bytes(torn_state)  # torn again: this time the append repairs it
    log.max_bytes = repaired  # the repair alone brings the log to its limit
    rec = log.append("commit")
    (rotated,) = rotated_files(path)
    assert rotated.read_bytes().startswith(torn_state)
    assert [r["event"] for r in iter_records(rotated)] == ["stage", TORN_EVENT]
    assert _live_records(path) == [rec]
    assert verify(path).ok


def test_a_json_line_that_is_not_a_record_at_the_end_is_acknowledged_not_chained_from(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path).append("stage", i=0)
    with path.open("ab") as f:
        f.write(b'{"note": "hand-written"}\n')
    assert [r["seq"] for r in tail(path, 5)] == [1]
    after = AuditLog(path).append("commit")
    assert after["seq"] == 3 and first["seq"] == 1
    report = verify(path)
    assert report.ok and report.torn_lines == (2,)


def test_a_torn_region_of_several_lines_is_acknowledged_as_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append("stage", i=0)
    with path.open("ab") as f:
        f.write(b'garbage one\ngarbage two\n{"seq": 2, "to')
    AuditLog(path).append("commit")
    report = verify(path)
    assert report.ok and report.torn_lines == (2,) and report.records == 3


def test_a_log_holding_only_a_torn_fragment_is_acknowledged_from_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"seq": 1, "ts')
    path.chmod(0o600)
    rec = AuditLog(path).append("stage")
    torn = next(iter_records(path))
    assert (torn["event"], torn["torn_offset"], torn["torn_bytes"], torn["seq"]) == (TORN_EVENT, 0, 14, 1)
    assert rec["prev"] == torn["hash"]
    report = verify(path)
    assert report.ok and report.torn_lines == (1,) and report.records == 2


def test_a_lock_file_that_cannot_be_opened_is_refused_naming_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lock = tmp_path / "audit.jsonl.lock"
    lock.mkdir(mode=0o700)
    err = audit_error(lambda: AuditLog(path))
    assert (err.code, err.fields["path"]) == ("audit_error", str(lock))


def test_format_record_writes_utc_whatever_the_local_time_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = AuditLog(tmp_path / "a.jsonl", clock=lambda: 1714557600.25).append("stage")
    monkeypatch.setenv("TZ", "XST+5")  # a POSIX zone five hours behind UTC; needs no tzdata
    time.tzset()
    try:
        assert time.localtime(0).tm_hour == 19  # the zone took effect
        assert format_record(rec).startswith("2024-05-01T10:00:00.250Z #1 stage ")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_listing_the_rotated_files_where_the_directory_is_a_file_names_that_path(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file, not a directory")
    err = audit_error(lambda: rotated_files(blocker / "audit.jsonl"))
    assert (err.code, err.fields["path"]) == ("audit_error", str(blocker))
    assert isinstance(err.detail, str) and err.detail


def test_an_append_whose_write_fails_carries_the_oses_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    assert audit_error(lambda: log.append("stage")).detail == os.strerror(errno.ENOSPC)


def test_a_rotated_file_ending_in_bytes_that_are_not_a_record_is_reported_torn_there(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=1024)
    for i in range(20):
        _probe(log, i)
    victim = rotated_files(path)[0]
    with victim.open("ab") as f:
        f.write(b'{"seq": 99, "to')
    report = verify(path)
    lines = victim.read_bytes().count(b"\n") + 1
    assert (report.ok, report.problem, report.file, report.line) == (False, "torn", str(victim), lines)
    assert isinstance(report.detail, str) and report.detail


def _pruned_log(path: Path) -> None:
    log = AuditLog(path, max_bytes=1024, keep_files=3)
    for i in range(60):
        _probe(log, i)
    assert rotated_files(path)[0].name != "audit.jsonl.1"


def test_a_kept_file_deleted_after_pruning_is_reported_at_the_oldest_file_left(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _pruned_log(path)
    rotated_files(path)[0].unlink()
    report = verify(path)
    assert (report.ok, report.problem, report.file) == (False, "deleted", str(rotated_files(path)[0]))


def test_an_unreadable_oldest_rotated_file_after_pruning_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _pruned_log(path)
    oldest = rotated_files(path)[0]
    oldest.unlink()
    oldest.mkdir()  # listed as the oldest file, and reading it fails
    err = audit_error(lambda: verify(path))
    assert (err.code, err.fields["path"]) == ("audit_error", str(oldest))
