"""The change history the policy engine judges cooldowns and the commit rate by, and its
rebuild from the audit log, so a new server (every stdio session is one) keeps the limits a
previous one started.

Cooldowns are keyed by kernel file (``Resolved.files``), not by knob id: two ids that write
one file (cgroup v1 ``cpu_weight`` and ``cpu_shares``) share one clock. The audit log is the
source because it is append-only and keeps every ``apply`` and ``commit`` with its time; the
journal is compacted and forgets committed changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lumos_mcp.audit import log_files
from lumos_mcp.errors import AuditError

HOUR_S = 3600.0
_BLOCK = 64 * 1024
_SLACK_S = 300.0
"""Records are in file order, not strictly in clock order (other processes append, clocks
step): reading backwards goes on this far past the window before it stops."""


@dataclass
class ChangeHistory:
    """Applied and committed changes: the ``History`` and ``CommitHistory`` the engine reads."""

    changed: dict[str, float] = field(default_factory=dict)
    """kernel file (or knob id) -> when a change to it was last applied."""
    applied: dict[str, float] = field(default_factory=dict)
    """txid -> when it was applied (counted against commits_per_hour)."""
    committed: dict[str, float] = field(default_factory=dict)
    """txid -> when it was committed."""

    def last_change_at(self, key: str) -> float | None:
        return self.changed.get(key)

    def commits_since(self, ts: float) -> int:
        return len(
            {t for t, at in self.applied.items() if at >= ts} | {t for t, at in self.committed.items() if at >= ts}
        )

    def committed_since(self, ts: float) -> int:
        return sum(1 for at in self.committed.values() if at >= ts)

    def record_apply(self, txid: str | None, keys: Iterable[str], now: float, *, counts: bool = True) -> None:
        """Remember an applied change; ``counts`` is false for a move that takes no commit slot."""
        for key in keys:
            if now >= self.changed.get(key, float("-inf")):
                self.changed[key] = now
        if counts and txid is not None:
            self.applied[txid] = now
        self._trim(now)

    def record_commit(self, txid: str, now: float) -> None:
        self.committed[txid] = now
        self._trim(now)

    def _trim(self, now: float) -> None:
        # Only the last hour counts for commits_per_hour; cooldowns keep one time per file.
        for table in (self.applied, self.committed):
            for txid in [t for t, at in table.items() if at < now - HOUR_S]:
                del table[txid]


@dataclass
class Histories:
    """The two histories a service keeps."""

    agent: ChangeHistory = field(default_factory=ChangeHistory)
    """Changes the agent's rules count (cooldowns, commits): speculative moves are not among them."""
    every: ChangeHistory = field(default_factory=ChangeHistory)
    """Every applied change, for the speculation envelope's cooldown: an agent's write cools the
    speculator too."""

    def record_apply(self, txid: str, keys: Iterable[str], now: float, *, speculative: bool) -> None:
        keys = tuple(keys)
        self.every.record_apply(None, keys, now, counts=False)
        if not speculative:
            self.agent.record_apply(txid, keys, now)

    def record_commit(self, txid: str, now: float) -> None:
        self.agent.record_commit(txid, now)


def rebuild(
    records: Iterable[Mapping[str, Any]],
    *,
    mode: str,
    since: float,
    files_of: Callable[[str], tuple[str, ...]],
) -> Histories:
    """The histories that ``apply`` and ``commit`` audit records at or after ``since`` describe.

    Records of another mode are skipped (a sandbox apply does not cool the live host); a
    record without a mode (written before records named theirs) counts, so the limit errs on
    the safe side. An apply record without its files is keyed by what ``files_of`` resolves
    for each knob now.
    """
    out = Histories()
    speculative: dict[str, bool] = {}
    for rec in records:
        ts, event = rec.get("ts"), rec.get("event")
        if event not in ("apply", "commit") or not isinstance(ts, int | float) or ts < since:
            continue
        if rec.get("mode", mode) != mode:
            continue
        txid = str(rec.get("tx"))
        if event == "apply":
            spec = rec.get("speculative") is True
            speculative[txid] = spec
            out.record_apply(txid, _keys(rec, files_of), float(ts), speculative=spec)
        else:
            out.record_commit(txid, float(ts))
    return out


def _keys(rec: Mapping[str, Any], files_of: Callable[[str], tuple[str, ...]]) -> list[str]:
    files = rec.get("files")
    values = rec.get("values")
    keys: list[str] = []
    if isinstance(files, dict):
        for knob, paths in files.items():
            if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
                keys.extend(paths)
            else:
                keys.extend(files_of(str(knob)))
    elif isinstance(values, dict):
        for knob in values:
            keys.extend(files_of(str(knob)))
    return keys


def audit_records_since(path: Path, since: float) -> list[dict[str, Any]]:
    """The audit records of ``path`` from about ``since`` on, in file order, reading the file
    backwards from its end, and on into its rotated files while they are newer than ``since``
    (the start-up cost depends on the window, not the log's size). A missing file has none.

    Raises:
        AuditError: the file exists but cannot be read.
    """
    found: list[dict[str, Any]] = []
    for file in reversed(log_files(path)):  # the live file, then the rotated ones, newest first
        try:
            for rec in _backwards(file):
                ts = rec.get("ts")
                if isinstance(ts, int | float) and ts < since - _SLACK_S:
                    found.reverse()
                    return found
                found.append(rec)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise AuditError(exc.strerror or "cannot read", path=str(file)) from exc
    found.reverse()
    return found


def _backwards(path: Path) -> Iterator[dict[str, Any]]:
    """JSON-object lines of ``path``, last first. Lines that are not JSON objects are skipped
    (``audit verify`` judges integrity; this only reads times and events)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        end = os.fstat(fd).st_size
        carry = b""
        while end > 0:
            start = max(0, end - _BLOCK)
            data = os.pread(fd, end - start, start) + carry
            lines = data.split(b"\n")
            carry = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                rec = _record(line)
                if rec is not None:
                    yield rec
            end = start
    finally:
        os.close(fd)


def _record(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
