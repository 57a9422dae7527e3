"""Anchors: the chain's head published elsewhere catches a log rewritten whole or cut short,
which the hash chain alone cannot see."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from lumos_mcp.anchor import check, head, parse, publish
from lumos_mcp.audit import GENESIS, iter_records, record_hash, verify
from lumos_mcp.cli import main
from lumos_mcp.service import Service
from tests.test_replay import POLICY, Clock, scripted_session


def rewrite_whole(path: Path, seq: int, **changes: Any) -> None:
    """Edit one record and hash every record again: what someone who can write the file can do."""
    out, prev = [], GENESIS
    for rec in iter_records(path):
        if rec["seq"] == seq:
            rec.update(changes)
        rec["prev"] = prev
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        out.append(orjson.dumps(rec) + b"\n")
    path.write_bytes(b"".join(out))


def cut_after(path: Path, seq: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(line for line in lines if orjson.loads(line)["seq"] <= seq))


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    clock = Clock()
    service = make_service(policy=POLICY, clock=clock)
    scripted_session(service, clock)
    return service


def test_a_log_rewritten_whole_verifies_alone_but_not_against_its_anchor(service: Service, tmp_path: Path) -> None:
    path = service.audit.path
    anchored = head(path)
    assert anchored is not None
    publish(anchored, to_file=tmp_path / "anchors.jsonl", to_syslog=False)
    assert check(path, parse((tmp_path / "anchors.jsonl").read_text().splitlines())).ok
    apply = next(r for r in iter_records(path) if r["event"] == "apply")
    rewrite_whole(path, apply["seq"], values={"vm.swappiness": 90})
    assert verify(path).ok  # the chain alone cannot tell
    report = check(path, parse((tmp_path / "anchors.jsonl").read_text().splitlines()))
    assert not report.ok
    assert report.problem == "rewritten"
    assert report.mismatches[0]["seq"] == anchored.seq


def test_a_log_cut_after_an_anchor_is_caught(service: Service) -> None:
    path = service.audit.path
    anchored = head(path)
    assert anchored is not None
    cut_after(path, anchored.seq - 3)
    assert verify(path).ok
    report = check(path, [anchored])
    assert (report.ok, report.problem) == (False, "truncated")


def test_anchors_are_read_from_journal_text_as_well_as_the_anchor_file() -> None:
    h = "ab" * 32
    lines = [
        f"Nov 30 06:00:00 host lumos-mcp[42]: audit head seq=7 hash={h}",
        '{"seq": 9, "hash": "' + "cd" * 32 + '", "ts": 1.5}',
        "unrelated line",
    ]
    assert [(a.seq, a.hash) for a in parse(lines)] == [(7, h), (9, "cd" * 32)]


def test_the_server_publishes_the_head_each_interval_while_it_moves(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    clock = Clock()
    anchors = tmp_path / "anchors.jsonl"
    service = make_service(policy=POLICY, clock=clock, anchor_interval_s=60.0, anchor_file=anchors)
    # syslog may not listen here: the file is what this test reads
    first = service.anchor_if_due()
    assert first is not None
    assert service.anchor_if_due() is None  # within the interval
    clock.now += 61
    assert service.anchor_if_due() is None  # the head did not move
    service.stage({"vm.swappiness": 20})
    clock.now += 61
    second = service.anchor_if_due()
    assert second is not None and second.seq > first.seq
    assert [a.seq for a in parse(anchors.read_text().splitlines())] == [first.seq, second.seq]


def test_audit_verify_with_an_anchor_exits_one_on_a_rewritten_log(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, anchors = str(service.state_dir), tmp_path / "anchors.jsonl"
    assert main(["audit", "anchor", "--state-dir", state, "--to", str(anchors), "--no-syslog"]) == 0
    assert main(["audit", "verify", "--state-dir", state, "--anchor", str(anchors)]) == 0
    rewrite_whole(service.audit.path, 3, actor="someone-else")
    assert main(["audit", "verify", "--state-dir", state]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--state-dir", state, "--anchor", str(anchors)]) == 1
    assert "rewritten" in capsys.readouterr().err
