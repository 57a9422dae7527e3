"""The committed state, as one truth: what lumos-mcp has committed on this host, knob by knob,
when, and by which transaction.

The journal is the source (`lumos_mcp.txn.committed`: its compaction folds every commit into a
``state`` record). A journal written before compaction kept that record forgot the commits it
compacted away; for such a journal the audit log, which keeps every ``commit`` with its values,
fills in (and `Service.start` journals what it found, so the audit log is read once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lumos_mcp.audit import iter_records, log_files
from lumos_mcp.errors import KnobError
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.knobs import codec
from lumos_mcp.knobs.spec import Value
from lumos_mcp.txn import committed
from lumos_mcp.txn.journal import scan


@dataclass(frozen=True)
class CommittedKnob:
    """One knob of the committed state."""

    knob: str
    value: Value
    tx: str
    committed_at: float
    files: tuple[str, ...]
    """The kernel files it was written to (relative to the kernel root; empty when unknown)."""
    codec: str | None
    original: Value | None
    """What it held before lumos-mcp first committed it (None when unknown)."""
    original_texts: tuple[str, ...] | None
    """The exact file texts before the first commit, writable as they are (journal only)."""
    first_tx: str
    first_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "knob": self.knob,
            "value": self.value,
            "tx": self.tx,
            "committed_at": self.committed_at,
            "committed": iso(self.committed_at),
            "files": list(self.files),
            "original": self.original,
            "first_tx": self.first_tx,
            "first_committed": iso(self.first_at),
        }


def iso(ts: float) -> str:
    """A timestamp as UTC ISO 8601 to the second (``2026-11-30T06:01:02Z``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def journal_path(state_dir: Path, mode: str) -> Path:
    return state_dir / f"journal-{mode}.jsonl"


def committed_state(state_dir: Path, mode: str, backend: Backend) -> list[CommittedKnob]:
    """What lumos-mcp has committed in ``mode`` on this state directory, sorted by knob id.

    Raises:
        JournalError: the journal cannot be read.
        AuditError: the audit log is needed (the journal has no state record) and cannot be read.
    """
    records = scan(journal_path(state_dir, mode)).records
    entries = committed.fold(records)
    if not committed.has_state(records):
        found = audit_state(state_dir / "audit.jsonl", mode)
        entries = committed.fold(records, found)
    return knobs_of(entries, backend)


def audit_state(audit_path: Path, mode: str) -> dict[str, committed.Entry]:
    """The committed state the audit log's ``commit`` records of ``mode`` describe (rotated files
    included), as journal state entries: the values committed, the files ``apply`` named, and
    the value ``stage`` saw before the first commit. A record without a mode is not counted (it
    could be a sandbox's).

    Raises:
        AuditError: a log file cannot be read.
    """
    if not any(f.exists() for f in log_files(audit_path)):
        return {}  # no log yet: nothing was committed through it
    return fold_audit(iter_records(audit_path), mode)


def fold_audit(records: Iterable[Mapping[str, Any]], mode: str) -> dict[str, committed.Entry]:
    """`audit_state` over records already read."""
    before: dict[str, dict[str, Any]] = {}
    files: dict[str, dict[str, Any]] = {}
    dropped: dict[str, set[str]] = {}
    out: dict[str, committed.Entry] = {}
    for rec in records:
        event, txid, ts = rec.get("event"), rec.get("tx"), rec.get("ts")
        if not isinstance(txid, str) or not isinstance(ts, int | float):
            continue
        if event == "stage" and isinstance(rec.get("changes"), list):
            before[txid] = {c["knob"]: c.get("before") for c in rec["changes"] if isinstance(c, dict) and "knob" in c}
        elif event == "apply" and rec.get("mode") == mode:
            named = rec.get("files")
            files[txid] = named if isinstance(named, dict) else {}
        elif event == "superseded" and isinstance(rec.get("knobs"), list):
            dropped.setdefault(txid, set()).update(k for k in rec["knobs"] if isinstance(k, str))
        elif event in ("revert", "auto_revert", "apply_failed"):
            before.pop(txid, None)
            files.pop(txid, None)
        elif event == "commit" and rec.get("mode") == mode and isinstance(rec.get("values"), dict):
            for knob, value in rec["values"].items():
                if knob in dropped.get(txid, ()):
                    continue
                paths = files.get(txid, {}).get(knob)
                entry: committed.Entry = {
                    "value": value,
                    "tx": txid,
                    "at": float(ts),
                    "files": paths if isinstance(paths, list) else None,
                    "codec": None,
                    "original": before.get(txid, {}).get(knob),
                    "original_raw": None,
                    "first_tx": txid,
                    "first_at": float(ts),
                }
                out[knob] = committed.merge(out.get(knob), entry)
            before.pop(txid, None)
            files.pop(txid, None)
            dropped.pop(txid, None)
    return out


def knobs_of(entries: Mapping[str, committed.Entry], backend: Backend) -> list[CommittedKnob]:
    """Journal state entries as `CommittedKnob`s. Files and codec come from the entry (the
    journal names them); an audit-only entry is resolved on this kernel (files stay empty when
    the knob does not resolve today). Entries whose knob the catalog does not know are dropped."""
    out = []
    for knob in sorted(entries):
        e = entries[knob]
        try:
            ref = backend.catalog.lookup(knob)
        except KnobError:
            continue
        files, codec_name = e.get("files"), e.get("codec")
        if not (isinstance(files, list) and isinstance(codec_name, str)):
            try:
                res = backend.resolve(ref)
                files, codec_name = list(res.files), res.codec
            except KnobError:
                files = files if isinstance(files, list) else []
                codec_name = None
        raw = e.get("original_raw")
        raw_texts = tuple(str(t) for t in raw) if isinstance(raw, list) and _texts(raw, len(files)) else None
        texts = tuple(codec.restorable(t) for t in raw_texts) if raw_texts is not None else None
        original = e.get("original")
        if original is None and raw_texts is not None and codec_name is not None:
            try:
                original = codec.decode(codec_name, ref.spec, raw_texts)
            except (KnobError, ValueError):
                texts = None
        out.append(
            CommittedKnob(
                knob=knob,
                value=e["value"],
                tx=str(e.get("tx")),
                committed_at=float(e.get("at") or 0.0),
                files=tuple(str(f) for f in files),
                codec=codec_name,
                original=original,
                original_texts=texts,
                first_tx=str(e.get("first_tx")),
                first_at=float(e.get("first_at") or 0.0),
            )
        )
    return out


def _texts(raw: object, n: int) -> bool:
    return isinstance(raw, list) and len(raw) == n and n > 0 and all(isinstance(t, str) for t in raw)


def texts_of(knob: CommittedKnob, backend: Backend, value: Value) -> tuple[str, ...] | None:
    """The file texts that write ``value`` to ``knob`` (None when its codec is unknown here)."""
    if knob.codec is None:
        return None
    ref = backend.catalog.lookup(knob.knob)
    return tuple(codec.encode(knob.codec, ref.spec, value))
