"""Anchors for the audit chain: its head, published where the log's writer cannot rewrite it.

A hash chain proves that nothing was edited *within* it, but whoever can write the file can
rewrite the whole chain (edit a record, hash everything after it again) or cut its end, and
``audit verify`` will find it intact. An anchor is ``(seq, hash)`` of the head at some moment,
kept elsewhere: in the system journal or syslog (``syslog`` ident ``lumos-mcp``, one line
``audit head seq=N hash=H``), and appended to an anchor file (JSON lines) that an operator
copies off the host or that a log shipper forwards. :func:`check` then proves, for each
anchor, that the record with that seq still has that hash: a rewritten or truncated log fails.

``serve`` publishes the head every ``anchor_interval_s`` while it changes; ``lumos-mcp audit
anchor`` publishes it now (for a timer); ``lumos-mcp audit verify --anchor FILE`` checks.
What stays open: records appended after the last anchor can still be rewritten until the next
one; and an anchor file kept on the same host is only as safe as where it is copied to.
"""

from __future__ import annotations

import os
import re
import syslog
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lumos_mcp.audit import iter_records, tail, verify
from lumos_mcp.errors import AuditError
from lumos_mcp.privfs import open_private

SYSLOG_IDENT = "lumos-mcp"
_TEXT_RE = re.compile(r"audit head seq=(\d+) hash=([0-9a-f]{64})")


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    ts: float | None = None


@dataclass(frozen=True)
class AnchorReport:
    """What :func:`check` found: ``ok`` when the chain verifies and holds every anchor."""

    ok: bool
    anchors: int
    records: int
    problem: str | None = None
    """``chain`` (the chain itself breaks), ``rewritten`` (a record has another hash than anchored)
    or ``truncated`` (an anchored seq is no longer in the log)."""
    detail: str = ""
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    pruned: int = 0
    """Anchors older than the oldest record kept (rotated files pruned, as an audit_pruned record says)."""


def head(path: Path) -> Anchor | None:
    """The last record's seq and hash (None: an empty or absent log).

    Raises:
        AuditError: the log cannot be read.
    """
    if not Path(path).exists():
        return None
    last = tail(Path(path), 1)
    if not last:
        return None
    return Anchor(int(last[0]["seq"]), str(last[0]["hash"]), float(last[0]["ts"]))


def publish(anchor: Anchor, *, to_file: Path | None, to_syslog: bool = True) -> None:
    """Write ``anchor`` to syslog (``LOG_AUTHPRIV``: the journal keeps it; lost silently when no
    syslog listens) and append it to ``to_file`` as one JSON line, fsynced.

    Raises:
        AuditError: the anchor file cannot be written.
    """
    if to_syslog:
        syslog.openlog(SYSLOG_IDENT, syslog.LOG_PID, syslog.LOG_AUTHPRIV)
        syslog.syslog(syslog.LOG_NOTICE, f"audit head seq={anchor.seq} hash={anchor.hash}")
    if to_file is not None:
        line = orjson.dumps({"seq": anchor.seq, "hash": anchor.hash, "ts": anchor.ts}) + b"\n"
        try:
            fd = open_private(Path(to_file), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(exc.strerror or "cannot write", path=str(to_file)) from exc


def parse(lines: Iterable[str]) -> list[Anchor]:
    """Anchors from an anchor file's JSON lines, or from syslog/journal text holding
    ``audit head seq=N hash=H`` (``journalctl -t lumos-mcp -o cat``); other lines are skipped."""
    out = []
    for line in lines:
        text = line.strip()
        if not text:
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and type(obj.get("seq")) is int and isinstance(obj.get("hash"), str):
            ts = obj.get("ts")
            out.append(Anchor(obj["seq"], obj["hash"], float(ts) if isinstance(ts, int | float) else None))
            continue
        match = _TEXT_RE.search(text)
        if match:
            out.append(Anchor(int(match.group(1)), match.group(2)))
    return out


def check(path: Path, anchors: list[Anchor]) -> AnchorReport:
    """Verify the chain at ``path`` and that it holds every anchor (same seq, same hash).

    Raises:
        AuditError: the log cannot be read.
    """
    report = verify(Path(path))
    if not report.ok:
        return AnchorReport(False, len(anchors), report.records, "chain", f"{report.problem}: {report.detail}")
    wanted = {a.seq: a for a in anchors}
    found: dict[int, str] = {}
    first: int | None = None
    for rec in iter_records(Path(path)):
        first = rec["seq"] if first is None else first
        if rec["seq"] in wanted:
            found[rec["seq"]] = rec["hash"]
    mismatches = []
    problem = None
    pruned = 0
    for a in sorted(anchors, key=lambda a: a.seq):
        if first is not None and a.seq < first:
            pruned += 1
        elif a.seq not in found:
            mismatches.append({"seq": a.seq, "anchored": a.hash, "found": None})
            problem = problem or "truncated"
        elif found[a.seq] != a.hash:
            mismatches.append({"seq": a.seq, "anchored": a.hash, "found": found[a.seq]})
            problem = "rewritten"
    if mismatches:
        detail = f"{len(mismatches)} of {len(anchors)} anchor(s) not in the log, first at seq {mismatches[0]['seq']}"
        return AnchorReport(False, len(anchors), report.records, problem, detail, mismatches, pruned)
    return AnchorReport(True, len(anchors), report.records, pruned=pruned)


__all__ = ["SYSLOG_IDENT", "Anchor", "AnchorReport", "check", "head", "parse", "publish"]
