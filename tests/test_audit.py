from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumos_mcp.audit import (
    GENESIS,
    TORN_EVENT,
    AuditLog,
    format_record,
    iter_records,
    record_hash,
    tail,
    verify,
)
from lumos_mcp.errors import AuditError

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self, now: float = 1_714_557_600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def make_log(path: Path, n: int) -> AuditLog:
    log = AuditLog(path, clock=FakeClock())
    for i in range(n):
        log.append("stage", txid=f"tx-{i}", knobs={"vm.swappiness": i}, ok=i % 2 == 0)
    return log


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def rec_line(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec) + b"\n"


# --------------------------------------------------------------------------- append
def test_append_returns_the_record_as_written(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", clock=lambda: 1000.5)
    rec = log.append("apply", txid="tx-1", knobs=["vm.swappiness"])
    assert rec["seq"] == 1
    assert rec["ts"] == 1000.5
    assert rec["event"] == "apply"
    assert rec["pid"] == os.getpid()
    assert rec["txid"] == "tx-1"
    assert rec["prev"] == GENESIS
    assert list(iter_records(tmp_path / "audit.jsonl")) == [rec]


def test_each_record_chains_from_the_previous_hash(tmp_path: Path) -> None:
    log = make_log(tmp_path / "a.jsonl", 0)
    first = log.append("stage")
    second = log.append("verdict", allowed=True)
    assert second["prev"] == first["hash"]
    assert second["seq"] == first["seq"] + 1


def test_hash_is_sha256_of_prev_and_the_sorted_record_without_hash(tmp_path: Path) -> None:
    rec = AuditLog(tmp_path / "a.jsonl").append("commit", zeta=1, alpha=[1, 2])
    body = {k: v for k, v in rec.items() if k != "hash"}
    expected = hashlib.sha256(rec["prev"].encode() + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert rec["hash"] == expected == record_hash(rec)


@pytest.mark.parametrize("event", ["", "Apply", "1apply", "apply-now", "a" * 65, "apply\n", "é"])
def test_append_refuses_event_names_outside_the_pattern(tmp_path: Path, event: str) -> None:
    with pytest.raises(AuditError):
        AuditLog(tmp_path / "a.jsonl").append(event)


@pytest.mark.parametrize("name", ["seq", "ts", "pid", "prev", "hash"])
def test_append_refuses_fields_named_like_reserved_keys(tmp_path: Path, name: str) -> None:
    with pytest.raises(AuditError):
        AuditLog(tmp_path / "a.jsonl").append("stage", **{name: 1})


@pytest.mark.parametrize("value", [object(), {1: "non-string key"}, 2**80])
def test_append_refuses_values_that_are_not_json(tmp_path: Path, value: object) -> None:
    path = tmp_path / "a.jsonl"
    with pytest.raises(AuditError):
        AuditLog(path).append("stage", value=value)
    assert path.read_bytes() == b""


def test_values_are_stored_and_returned_in_their_json_form(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    rec = AuditLog(path).append("stage", pair=(1, 2), nested={"a": [None, True, 1.5]}, nan=float("nan"))
    assert rec["pair"] == [1, 2]
    assert rec["nan"] is None
    assert list(iter_records(path)) == [rec]
    assert verify(path).ok


def test_a_second_writer_continues_the_chain_of_the_first(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    one, two = AuditLog(path), AuditLog(path)
    for i in range(10):
        (one if i % 3 else two).append("stage", i=i)
    assert [r["seq"] for r in iter_records(path)] == list(range(1, 11))
    assert verify(path).ok


def test_threads_appending_to_one_log_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)

    def work(worker: int) -> None:
        for i in range(50):
            log.append("speculative_move", worker=worker, i=i)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = verify(path)
    assert report.ok and report.records == 400


_WRITER = """
import sys
from pathlib import Path
from lumos_mcp.audit import AuditLog
log = AuditLog(Path(sys.argv[1]))
for i in range(int(sys.argv[2])):
    log.append("speculative_move", worker=sys.argv[3], i=i)
"""


def test_two_processes_appending_200_records_each_keep_one_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "200", name], cwd=REPO, env=env)
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    report = verify(path)
    assert report.ok, report
    assert report.records == 400
    records = list(iter_records(path))
    for name in ("a", "b"):
        assert [r["i"] for r in records if r["worker"] == name] == list(range(200))


def test_opening_a_log_that_cannot_be_opened_raises_audit_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError):
        AuditLog(tmp_path)  # a directory, not a file


# --------------------------------------------------------------------------- verify
def test_verify_accepts_an_untouched_log_and_reports_its_head(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 5)
    report = verify(path)
    assert report.ok and report.records == 5 and report.problem is None
    assert report.head == tail(path, 1)[0]["hash"]


def test_verify_accepts_an_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    AuditLog(path)
    assert verify(path).ok and verify(path).records == 0


def test_verify_of_a_missing_log_raises_audit_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError):
        verify(tmp_path / "nope.jsonl")


def test_verify_detects_an_edited_record(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 5)
    lines = lines_of(path)
    rec = orjson.loads(lines[2])
    rec["knobs"] = {"vm.swappiness": 100}
    lines[2] = rec_line(rec)
    write_lines(path, lines)
    report = verify(path)
    assert (report.ok, report.problem, report.line, report.seq, report.records) == (False, "edited", 3, 3, 2)


def test_verify_detects_an_edit_whose_hash_was_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 5)
    lines = lines_of(path)
    rec = orjson.loads(lines[1])
    rec["ok"] = True
    rec["hash"] = record_hash(rec)
    lines[1] = rec_line(rec)
    write_lines(path, lines)
    report = verify(path)
    assert (report.ok, report.problem, report.line) == (False, "edited", 3)


def test_verify_detects_a_deleted_record(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 5)
    lines = lines_of(path)
    del lines[1]
    write_lines(path, lines)
    report = verify(path)
    assert (report.ok, report.problem, report.line, report.seq) == (False, "deleted", 2, 3)


def test_verify_detects_an_inserted_forged_record(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 5)
    lines = lines_of(path)
    forged = {**orjson.loads(lines[2]), "event": "commit", "seq": 99}
    forged["hash"] = record_hash(forged)
    lines.insert(2, rec_line(forged))
    write_lines(path, lines)
    report = verify(path)
    assert (report.ok, report.problem, report.line) == (False, "inserted", 3)


def test_verify_detects_two_swapped_records(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 5)
    lines = lines_of(path)
    lines[1], lines[3] = lines[3], lines[1]
    write_lines(path, lines)
    report = verify(path)
    assert (report.ok, report.problem, report.line, report.seq) == (False, "reordered", 2, 4)


def test_verify_detects_truncation_only_when_given_a_known_head(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    last = make_log(path, 5).append("commit")
    write_lines(path, lines_of(path)[:-1])
    assert verify(path).ok  # a keyless chain cannot tell a shorter honest log from a truncated one
    report = verify(path, head=last["hash"])
    assert (report.ok, report.problem) == (False, "deleted")
    assert verify(path, head=tail(path, 1)[0]["hash"]).ok


def test_verify_reports_a_line_that_is_not_json_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 4)
    lines = lines_of(path)
    lines.insert(2, b"hello\n")
    write_lines(path, lines)
    report = verify(path)
    assert (report.ok, report.problem, report.line) == (False, "not_json", 3)


# --------------------------------------------------------------------------- torn tails
def test_verify_reports_an_unacknowledged_torn_tail_as_torn(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 3)
    with path.open("ab") as f:
        f.write(b'{"seq": 4, "ts": 17')
    report = verify(path)
    assert (report.ok, report.problem, report.line, report.records) == (False, "torn", 4, 3)


def test_opening_after_a_torn_tail_acknowledges_it_and_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    before = make_log(path, 3).append("apply")
    torn = b'{"seq": 5, "ts": 17'
    with path.open("ab") as f:
        f.write(torn)
    size = path.stat().st_size
    after = AuditLog(path).append("recovery", txid="tx-9")
    records = list(iter_records(path))
    ack = records[-2]
    assert ack["event"] == TORN_EVENT
    assert (ack["seq"], ack["prev"]) == (before["seq"] + 1, before["hash"])
    assert (ack["torn_offset"], ack["torn_bytes"]) == (size - len(torn), len(torn))
    assert ack["torn_sha256"] == hashlib.sha256(torn).hexdigest()
    assert after["prev"] == ack["hash"]
    report = verify(path)
    assert report.ok and report.torn_lines == (5,) and report.records == 6


def test_an_acknowledged_torn_region_that_is_later_edited_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 3)
    with path.open("ab") as f:
        f.write(b'{"seq": 4, "ts": 17')
    AuditLog(path).append("recovery")
    lines = lines_of(path)
    lines[3] = b'{"seq": 4, "ts": 18\n'
    write_lines(path, lines)
    report = verify(path)
    assert (report.ok, report.problem, report.line) == (False, "not_json", 4)


def test_deleting_the_torn_acknowledgement_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 3)
    with path.open("ab") as f:
        f.write(b'{"seq": 4, "ts')
    AuditLog(path).append("recovery")
    lines = lines_of(path)
    del lines[4]
    write_lines(path, lines)
    assert not verify(path).ok


def test_a_complete_last_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 3)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    AuditLog(path).append("commit")
    assert [r["event"] for r in iter_records(path)] == ["stage", "stage", "stage", "commit"]
    assert verify(path).ok


def test_a_torn_tail_left_by_another_writer_is_repaired_by_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = make_log(path, 2)
    with path.open("ab") as f:
        f.write(b'{"seq"')
    log.append("commit")
    assert [r["event"] for r in iter_records(path)] == ["stage", "stage", TORN_EVENT, "commit"]
    assert verify(path).ok


# --------------------------------------------------------------------------- tail, replay, format
def test_tail_returns_the_last_n_records_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 10)
    assert [r["seq"] for r in tail(path, 3)] == [8, 9, 10]
    assert [r["seq"] for r in tail(path, 50)] == list(range(1, 11))
    assert tail(path, 0) == []


def test_tail_finds_records_longer_than_its_read_block(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    for i in range(4):
        log.append("stage", i=i, blob="x" * 100_000)
    assert [r["i"] for r in tail(path, 2)] == [2, 3]
    assert log.append("commit")["seq"] == 5


def test_tail_skips_a_torn_final_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 3)
    with path.open("ab") as f:
        f.write(b'{"seq": 4')
    assert [r["seq"] for r in tail(path, 2)] == [2, 3]


def test_iter_records_replays_every_record_and_skips_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 2)
    with path.open("ab") as f:
        f.write(b'{"seq"')
    AuditLog(path).append("auto_revert", txid="tx-1")
    assert [r["event"] for r in iter_records(path)] == ["stage", "stage", TORN_EVENT, "auto_revert"]


def test_format_record_renders_one_plain_line_with_fields(tmp_path: Path) -> None:
    rec = AuditLog(tmp_path / "a.jsonl", clock=lambda: 0.25).append(
        "approval_granted", approval_id="ap-1a2b3c4d", note="ok by\nme", knobs=["vm.swappiness"]
    )
    text = format_record(rec)
    assert "\n" not in text
    assert text.startswith("1970-01-01T00:00:00.250Z #1 approval_granted pid=")
    assert "approval_id=ap-1a2b3c4d" in text
    assert 'note="ok by\\nme"' in text
    assert 'knobs=["vm.swappiness"]' in text
    assert text.endswith(rec["hash"][:8])


def test_format_record_tolerates_odd_records() -> None:
    assert format_record({}) == "? #? ? pid=?"
    assert format_record({"ts": "x", "seq": 2, "event": "apply", "extra": None}) == "? #2 apply pid=? extra=null"


# --------------------------------------------------------------------------- properties
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda k: k not in {"seq", "ts", "event", "pid", "prev", "hash"}
)


@pytest.fixture(scope="module")
def base_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """A clean 30-record log; any prefix of it is itself a clean log."""
    path = tmp_path_factory.mktemp("base") / "audit.jsonl"
    log = AuditLog(path, clock=FakeClock())
    events = ["stage", "verdict", "approval_requested", "approval_granted", "apply", "commit", "revert"]
    for i in range(30):
        log.append(events[i % len(events)], txid=f"tx-{i // 3}", i=i, knobs={"vm.swappiness": i}, note=None)
    return lines_of(path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scratch") / "audit.jsonl"


@settings(max_examples=40, deadline=None)
@given(fields=st.dictionaries(field_names, json_values, max_size=5))
def test_any_json_fields_round_trip_and_verify(scratch: Path, fields: dict[str, Any]) -> None:
    scratch.unlink(missing_ok=True)
    log = AuditLog(scratch)
    written = [log.append("stage", **fields), log.append("commit", **fields)]
    assert list(iter_records(scratch)) == written
    assert verify(scratch).ok


def _check(scratch: Path, lines: list[bytes], problem: str | None) -> None:
    write_lines(scratch, lines)
    report = verify(scratch)
    assert not report.ok, report
    if problem is not None:
        assert report.problem == problem, report


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_single_edit_is_detected(base_lines: list[bytes], scratch: Path, data: st.DataObject) -> None:
    lines = base_lines[: data.draw(st.integers(2, 30), label="n")]
    i = data.draw(st.integers(0, len(lines) - 1), label="i")
    rec = orjson.loads(lines[i])
    key = data.draw(st.sampled_from(sorted(rec)), label="key")
    old = orjson.dumps(rec[key])
    rec[key] = data.draw(json_values.filter(lambda v: orjson.dumps(v) != old), label="new")
    lines[i] = rec_line(rec)
    _check(scratch, lines, "edited")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_single_edit_with_a_recomputed_hash_is_detected_before_the_last_record(
    base_lines: list[bytes], scratch: Path, data: st.DataObject
) -> None:
    lines = base_lines[: data.draw(st.integers(2, 30), label="n")]
    i = data.draw(st.integers(0, len(lines) - 2), label="i")
    rec = orjson.loads(lines[i])
    key = data.draw(st.sampled_from(sorted(k for k in rec if k != "hash")), label="key")
    old = orjson.dumps(rec[key])
    rec[key] = data.draw(json_values.filter(lambda v: orjson.dumps(v) != old), label="new")
    rec["hash"] = record_hash(rec)
    lines[i] = rec_line(rec)
    _check(scratch, lines, None)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_single_deletion_is_detected(base_lines: list[bytes], scratch: Path, data: st.DataObject) -> None:
    lines = base_lines[: data.draw(st.integers(2, 30), label="n")]
    i = data.draw(st.integers(0, len(lines) - 1), label="i")
    head = orjson.loads(lines[-1])["hash"]
    del lines[i]
    write_lines(scratch, lines)
    if i < len(lines):
        _check(scratch, lines, "deleted")
    else:  # the last record: only a known head reveals it
        report = verify(scratch, head=head)
        assert (report.ok, report.problem) == (False, "deleted")


def _forged(base: list[bytes]) -> st.SearchStrategy[bytes]:
    hashes = [orjson.loads(line)["hash"] for line in base]
    hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)

    @st.composite
    def build(draw: Callable[..., Any]) -> bytes:
        rec: dict[str, Any] = {
            "seq": draw(st.integers(0, 40)),
            "ts": draw(st.floats(allow_nan=False, allow_infinity=False)),
            "event": draw(st.sampled_from(["commit", "approval_granted", "apply"])),
            "pid": draw(st.integers(1, 2**22)),
            "prev": draw(st.sampled_from([GENESIS, *hashes]) | hex64),
        }
        rec.update(draw(st.dictionaries(field_names, json_values, max_size=3)))
        rec["hash"] = record_hash(rec) if draw(st.booleans()) else draw(hex64)
        return rec_line(rec)

    return st.sampled_from(base) | build()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_single_inserted_record_is_detected_before_the_end(
    base_lines: list[bytes], scratch: Path, data: st.DataObject
) -> None:
    lines = base_lines[: data.draw(st.integers(2, 30), label="n")]
    forged = data.draw(_forged(lines), label="forged")
    lines.insert(data.draw(st.integers(0, len(lines) - 1), label="at"), forged)
    _check(scratch, lines, "inserted")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_swap_of_two_records_is_detected(base_lines: list[bytes], scratch: Path, data: st.DataObject) -> None:
    lines = base_lines[: data.draw(st.integers(2, 30), label="n")]
    i = data.draw(st.integers(0, len(lines) - 2), label="i")
    j = data.draw(st.integers(i + 1, len(lines) - 1), label="j")
    lines[i], lines[j] = lines[j], lines[i]
    _check(scratch, lines, "reordered")
