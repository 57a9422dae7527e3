"""Gaps of the audit log that mutation testing found: what each refusal and I/O error carries,
records longer than the tail scanner's read block, and the exact report of a failed verify."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from lumos_mcp.audit import TORN_EVENT, AuditLog, iter_records, tail, verify
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
