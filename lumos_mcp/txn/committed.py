"""What the journal says is committed, knob by knob: the fold that compaction keeps.

Compaction drops closed transactions' records, and with them the commits. Before it does, it
folds every commit into one ``state`` record (``{"t": "state", "knobs": {knob: entry}}``) that
the rewritten journal starts with, so the journal keeps the committed truth and stays bounded:
one entry per knob, whatever the number of commits. A state record has no ``tx``, so recovery's
replay passes over it.

An entry (plain JSON, as journaled)::

    {"value": 10, "tx": "tx-…", "at": 1714557600.2, "files": [...], "codec": "int",
     "original": null, "original_raw": ["60\\n"], "first_tx": "tx-…", "first_at": 1714550000.0}

``value``/``tx``/``at`` are the latest commit; ``original``/``original_raw`` what the knob held
before the first commit that lumos-mcp remembers (``first_tx`` at ``first_at``): the journal
keeps the exact file text (``original_raw``), the audit log only the value (``original``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STATE = "state"
"""The record type that carries the folded committed state."""

Entry = dict[str, Any]


def merge(old: Entry | None, new: Entry) -> Entry:
    """One knob's entry after ``new``: the later commit's value, the earlier first commit's original.

    Ties on the commit time go to ``new`` (it was read later).
    """
    if old is None:
        return dict(new)
    latest = new if _num(new.get("at")) >= _num(old.get("at")) else old
    first = old if _num(old.get("first_at")) <= _num(new.get("first_at")) else new
    out = dict(latest)
    for key in ("original", "original_raw", "first_tx", "first_at"):
        out[key] = first.get(key)
    return out


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def fold(records: Iterable[Mapping[str, Any]], state: Mapping[str, Entry] | None = None) -> dict[str, Entry]:
    """The committed state after ``records`` (journal records in file order), starting from ``state``.

    A transaction's commit keeps the knobs it still owns: those it wrote or took over, less those
    a later transaction superseded or took from it. A ``commit`` record that closes a transaction
    left with no knob (all superseded) commits nothing.
    """
    out: dict[str, Entry] = {k: dict(v) for k, v in (state or {}).items()}
    begins: dict[str, Mapping[str, Any]] = {}
    owned: dict[str, list[str]] = {}
    for r in records:
        kind, txid = r.get("t"), r.get("tx")
        if kind == STATE:
            knobs = r.get("knobs")
            if isinstance(knobs, dict):
                for knob, entry in knobs.items():
                    if isinstance(knob, str) and isinstance(entry, dict) and "value" in entry:
                        out[knob] = merge(out.get(knob), entry)
            continue
        if not isinstance(txid, str):
            continue
        if kind == "begin" and isinstance(r.get("knobs"), list):
            begins[txid] = r
            taken: list[str] = []
            takes = r.get("takes_over")
            for holder, knobs in (takes if isinstance(takes, dict) else {}).items():
                if isinstance(knobs, list):
                    taken.extend(k for k in knobs if isinstance(k, str))
                    if holder in owned:
                        owned[holder] = [k for k in owned[holder] if k not in set(knobs)]
            owned[txid] = taken
        elif kind == "write" and txid in owned and isinstance(r.get("knob"), str):
            owned[txid].append(r["knob"])
        elif kind == "supersede" and txid in owned and isinstance(r.get("knobs"), list):
            dropped = set(r["knobs"])
            owned[txid] = [k for k in owned[txid] if k not in dropped]
        elif kind == "commit" and txid in owned:
            at = r.get("ts")
            for knob in dict.fromkeys(owned.pop(txid)):
                entry = _entry(begins[txid], knob, at)
                if entry is not None:
                    out[knob] = merge(out.get(knob), entry)
            del begins[txid]
        elif kind == "reverted" and txid in owned:
            del owned[txid], begins[txid]
    return out


def _entry(begin: Mapping[str, Any], knob: str, at: object) -> Entry | None:
    change = next((k for k in begin["knobs"] if isinstance(k, dict) and k.get("knob") == knob), None)
    if change is None or "after" not in change:
        return None
    when = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0
    return {
        "value": change["after"],
        "tx": begin["tx"],
        "at": when,
        "files": change.get("files"),
        "codec": change.get("codec"),
        "original": None,
        "original_raw": change.get("raw"),
        "first_tx": begin["tx"],
        "first_at": when,
    }


def has_state(records: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a journal carries a state record (else commits it forgot may only be in the audit log)."""
    return any(r.get("t") == STATE for r in records)


def state_record(knobs: Mapping[str, Entry], ts: float) -> dict[str, Any]:
    """The record that carries ``knobs`` (sorted, so two folds of one state write the same bytes)."""
    return {"t": STATE, "ts": ts, "knobs": {k: knobs[k] for k in sorted(knobs)}}
