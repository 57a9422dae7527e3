"""Forensics from the audit log alone: every knob's timeline, the state at a moment, and every
staged change judged again under another policy.

``load(path)`` verifies the hash chain first and refuses a log that does not verify
(``AuditChainBrokenError``) unless ``partial=True``: then only the records before the first
problem are replayed, and the result says so (``verified=False`` and the problem).

A knob's timeline is a list of :class:`Segment`: the value it held from ``since`` to ``until``
(``None``: before the log / still now), which transaction and actor set it, with what
rationale, and its state: ``original`` (the value first observed, before lumos-mcp changed it),
``armed`` (applied, its auto-revert deadline running), ``committed``, ``reverted`` (an
operator's or agent's revert put the value before that transaction back), ``auto_reverted``
(a deadline, a server exit, a guard or recovery did) or ``unknown`` (a revert found the knob
changed by someone else). :class:`Mark` lists the events that touched each knob (apply,
commit, revert, auto_revert) for the plot.

What the log does not hold, replay cannot know: changes made outside lumos-mcp between its
records (a value read at ``stage`` is the first one seen), and the values of records written
before records named them (an old revert without ``values`` falls back on the ``originals`` of
its apply, then on the ``before`` of its stage).

Records of one mode are replayed (``mode=None``: the mode of the log's last record that names
one): a sandbox tree's values are not the host's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lumos_mcp.audit import iter_records, verify
from lumos_mcp.errors import AuditChainBrokenError, KnobError
from lumos_mcp.history import Histories
from lumos_mcp.knobs import Catalog, default_catalog
from lumos_mcp.policy import Change, Policy, evaluate, referenced_knobs

VALUE_EVENTS = ("apply", "commit", "revert", "auto_revert")
"""The events a plot marks."""
_RESTORING = ("restored", "unchanged")


@dataclass
class Segment:
    """A knob's value over a span of time."""

    knob: str
    value: Any
    since: float | None
    """Unix seconds; None: before the first record (the value lumos-mcp first saw)."""
    until: float | None = None
    """Unix seconds; None: it still holds at the end of the log."""
    state: str = "original"
    tx: str | None = None
    actor: str | None = None
    rationale: str | None = None
    event: str | None = None
    """The record that began this segment (None for the original value)."""
    seq: int | None = None
    reason: str | None = None
    """Why an auto-revert happened (deadline, server_exit, a guard...)."""

    def covers(self, ts: float) -> bool:
        return (self.since is None or self.since <= ts) and (self.until is None or ts < self.until)


@dataclass(frozen=True)
class Mark:
    """One event on a knob, for the plot."""

    knob: str
    ts: float
    seq: int
    event: str
    tx: str | None
    value: Any
    reason: str | None = None


@dataclass(frozen=True)
class Rejudged:
    """A staged change whose decision differs under another policy."""

    tx: str
    ts: float
    seq: int
    actor: str | None
    changes: list[dict[str, Any]]
    was: dict[str, Any]
    """The recorded verdict: ``allowed`` and ``approval_required``."""
    now: dict[str, Any]
    """Under the other policy: ``allowed``, ``approval_required``, ``denials`` and ``approval_reasons``."""


@dataclass
class Replay:
    """What the audit log says happened."""

    path: str
    verified: bool
    problem: dict[str, Any] | None
    records: int
    mode: str | None
    modes_seen: list[str]
    first_ts: float | None = None
    last_ts: float | None = None
    timelines: dict[str, list[Segment]] = field(default_factory=dict)
    marks: dict[str, list[Mark]] = field(default_factory=dict)
    rejudged: list[Rejudged] | None = None
    """Set when a policy was given: each staged change that policy decides differently."""
    rejudged_count: int = 0
    """How many staged changes were judged again."""

    def at(self, ts: float) -> dict[str, Segment]:
        """Every knob lumos-mcp touched, as it was at ``ts`` (before its first record: the value
        it was first seen with)."""
        out = {}
        for knob, segments in self.timelines.items():
            found = next((s for s in segments if s.covers(ts)), None)
            if found is not None:
                out[knob] = found
        return out

    def value_at(self, knob: str, ts: float) -> Any:
        """The value ``knob`` held at ``ts`` by the log.

        Raises:
            KeyError: the log never saw this knob, or not yet at ``ts``.
        """
        return self.at(ts)[knob].value

    def to_data(self) -> dict[str, Any]:
        """As JSON-able data (``lumos-mcp audit replay --json``)."""
        out: dict[str, Any] = {
            "path": self.path,
            "verified": self.verified,
            "problem": self.problem,
            "records": self.records,
            "mode": self.mode,
            "modes_seen": self.modes_seen,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "knobs": {k: [asdict(s) for s in segs] for k, segs in self.timelines.items()},
            "marks": {k: [asdict(m) for m in marks] for k, marks in self.marks.items()},
        }
        if self.rejudged is not None:
            out["rejudged"] = {"judged": self.rejudged_count, "different": [asdict(r) for r in self.rejudged]}
        return out


def load(
    path: Path,
    *,
    partial: bool = False,
    mode: str | None = None,
    policy: Policy | None = None,
    catalog: Catalog | None = None,
) -> Replay:
    """Verify the log at ``path`` and replay it (see the module docstring).

    Raises:
        AuditChainBrokenError: the chain does not verify and ``partial`` is false.
        AuditError: a file cannot be read.
    """
    report = verify(Path(path))
    problem = None
    if not report.ok:
        problem = {
            "problem": report.problem,
            "detail": report.detail,
            "file": report.file,
            "line": report.line,
            "seq": report.seq,
            "records_before": report.records,
        }
        if not partial:
            raise AuditChainBrokenError(
                f"the hash chain does not verify ({report.detail}); replay refuses it "
                "(--partial shows what precedes the break)",
                path=str(path),
                **{k: v for k, v in problem.items() if k not in ("file", "detail")},
            )
    records: Iterable[Mapping[str, Any]] = iter_records(Path(path))
    if not report.ok:
        records = _first(records, report.records)
    return replay(
        records,
        path=str(path),
        verified=report.ok,
        problem=problem,
        mode=mode,
        policy=policy,
        catalog=catalog,
    )


def _first(records: Iterable[Mapping[str, Any]], n: int) -> Iterable[Mapping[str, Any]]:
    for i, rec in enumerate(records):
        if i >= n:
            return
        yield rec


def _mode_of_log(records: list[Mapping[str, Any]]) -> str | None:
    for rec in reversed(records):
        if isinstance(rec.get("mode"), str):
            return str(rec["mode"])
    return None


class _Builder:
    def __init__(self, out: Replay, policy: Policy | None, catalog: Catalog | None) -> None:
        self.out = out
        self.policy = policy
        self.catalog = catalog
        self.staged: dict[str, dict[str, Any]] = {}
        self.originals: dict[str, dict[str, Any]] = {}  # txid -> knob -> value its revert restores
        self.history = Histories()

    # ------------------------------------------------------------------ timeline
    def _current(self, knob: str) -> Segment | None:
        segs = self.out.timelines.get(knob)
        return segs[-1] if segs else None

    def _seen(self, knob: str, value: Any) -> None:
        if knob not in self.out.timelines:
            self.out.timelines[knob] = [Segment(knob=knob, value=value, since=None)]
            self.out.marks[knob] = []

    def _begin(self, knob: str, value: Any, rec: Mapping[str, Any], state: str, **extra: Any) -> None:
        ts = float(rec["ts"])
        current = self._current(knob)
        if current is not None:
            current.until = ts
        self.out.timelines[knob].append(
            Segment(knob=knob, value=value, since=ts, state=state, event=str(rec["event"]), seq=rec["seq"], **extra)
        )

    def _mark(self, knob: str, rec: Mapping[str, Any], value: Any, event: str, reason: str | None = None) -> None:
        tx = rec.get("tx")
        self.out.marks[knob].append(
            Mark(knob, float(rec["ts"]), int(rec["seq"]), event, str(tx) if tx else None, value, reason)
        )

    # ------------------------------------------------------------------ events
    def feed(self, rec: Mapping[str, Any], mode: str | None) -> None:
        event = rec.get("event")
        handler = getattr(self, f"_on_{event}", None)
        if handler is not None:
            handler(rec, mode)

    def _on_stage(self, rec: Mapping[str, Any], mode: str | None) -> None:
        changes = [
            c
            for c in rec.get("changes") or []
            if isinstance(c, dict) and isinstance(c.get("knob"), str) and "after" in c
        ]
        self.staged[str(rec.get("tx"))] = {**rec, "changes": changes}
        for c in changes:
            self._seen(c["knob"], c.get("before"))

    def _on_verdict(self, rec: Mapping[str, Any], mode: str | None) -> None:
        staged = self.staged.get(str(rec.get("tx")))
        if staged is not None:
            staged["verdict"] = {"allowed": rec.get("allowed"), "approval_required": rec.get("approval_required")}
            if self.policy is not None:
                context = rec.get("context")
                self._rejudge(staged, context if isinstance(context, dict) else {})
                self._settle(staged)

    def _on_apply(self, rec: Mapping[str, Any], mode: str | None) -> None:
        txid = str(rec.get("tx"))
        values = rec.get("values") if isinstance(rec.get("values"), dict) else {}
        assert isinstance(values, dict)
        staged = self.staged.get(txid, {})
        before = {c["knob"]: c.get("before") for c in staged.get("changes", [])}
        recorded = rec.get("originals") if isinstance(rec.get("originals"), dict) else {}
        assert isinstance(recorded, dict)
        self.originals[txid] = {k: recorded.get(k, before.get(k)) for k in values}
        ts = float(rec["ts"])
        for knob, value in values.items():
            self._seen(knob, self.originals[txid][knob])
            self._begin(
                knob,
                value,
                rec,
                "armed",
                tx=txid,
                actor=_str(rec.get("actor")),
                rationale=_str(staged.get("rationale")),
            )
            self._mark(knob, rec, value, "apply")
        self.history.record_apply(txid, list(values), ts, speculative=rec.get("speculative") is True)

    def _on_commit(self, rec: Mapping[str, Any], mode: str | None) -> None:
        txid = str(rec.get("tx"))
        values = rec.get("values") if isinstance(rec.get("values"), dict) else {}
        assert isinstance(values, dict)
        for knob, value in values.items():
            current = self._current(knob)
            if current is not None and current.tx == txid:
                current.state = "committed"
                self._mark(knob, rec, value, "commit")
        self.history.record_commit(txid, float(rec["ts"]))

    def _restore(self, rec: Mapping[str, Any], txids: list[str], event: str, state: str, reason: str | None) -> None:
        knobs = [k for k in rec.get("knobs") or [] if isinstance(k, dict) and isinstance(k.get("knob"), str)]
        values = rec.get("values") if isinstance(rec.get("values"), dict) else {}
        assert isinstance(values, dict)
        for entry in knobs:
            knob = entry["knob"]
            if knob not in self.out.timelines:
                continue
            tx = next((t for t in reversed(txids) if knob in self.originals.get(t, {})), txids[-1] if txids else None)
            if entry.get("action") in _RESTORING:
                value = values[knob] if knob in values else self.originals.get(tx or "", {}).get(knob)
                seg_state = state
            else:
                value, seg_state = None, "unknown"
            self._begin(knob, value, rec, seg_state, tx=tx, actor=_str(rec.get("actor")), reason=reason)
            self._mark(knob, rec, value, event, reason)

    def _on_revert(self, rec: Mapping[str, Any], mode: str | None) -> None:
        self._restore(rec, [str(rec.get("tx"))], "revert", "reverted", None)

    def _on_auto_revert(self, rec: Mapping[str, Any], mode: str | None) -> None:
        self._restore(rec, [str(rec.get("tx"))], "auto_revert", "auto_reverted", _str(rec.get("reason")))

    def _on_recovery(self, rec: Mapping[str, Any], mode: str | None) -> None:
        txids = [str(t) for t in rec.get("transactions") or []]
        if txids:
            self._restore(rec, txids, "auto_revert", "auto_reverted", "recovery")

    # ------------------------------------------------------------------ policy
    def _rejudge(self, rec: dict[str, Any], context: dict[str, Any]) -> None:
        """Judge a staged change (its stage record) under ``policy``, with the values its verdict
        read (``context``), else the values replay holds for the knobs its rules read."""
        assert self.policy is not None
        changes = rec["changes"]
        catalog = self.catalog or default_catalog()
        ts = float(rec["ts"])
        speculative = rec.get("speculative") is True
        proposed: list[Change] = []
        unknown: list[dict[str, Any]] = []
        for c in changes:
            try:
                kind = catalog.lookup(c["knob"]).spec.kind
            except KnobError as e:
                unknown.append({"rule": "unknown_knob", "knob": c["knob"], "message": str(e)})
                continue
            proposed.append(Change(knob=c["knob"], kind=kind, before=c.get("before"), after=c["after"]))
        current = {c.knob: c.before for c in proposed if c.before is not None}
        for knob in referenced_knobs(self.policy, proposed):
            seg = self._current(knob)
            if knob in context and knob not in current:
                current[knob] = context[knob]
            if knob not in current and seg is not None and seg.value is not None:
                current[knob] = seg.value
        confirm = rec.get("confirm_within_s")
        verdict = evaluate(
            self.policy,
            proposed,
            current=current,
            history=self.history.every if speculative else self.history.agent,
            now=ts,
            confirm_within_s=float(confirm) if isinstance(confirm, int | float) else None,
            speculative=speculative,
        )
        denials = unknown + [
            {"rule": d.rule, "knob": d.knob, "message": d.message, "value": _plain(d.value), "limit": _plain(d.limit)}
            for d in verdict.denials
        ]
        rec["rejudge"] = {
            "allowed": verdict.allowed and not unknown,
            "approval_required": verdict.approval_required,
            "denials": denials,
            "approval_reasons": list(verdict.approval_reasons),
        }
        self.out.rejudged_count += 1

    def _settle(self, staged: dict[str, Any]) -> None:
        was, now = staged["verdict"], staged["rejudge"]
        if (was["allowed"], was["approval_required"]) == (now["allowed"], now["approval_required"]):
            return
        assert self.out.rejudged is not None
        self.out.rejudged.append(
            Rejudged(
                tx=str(staged.get("tx")),
                ts=float(staged["ts"]),
                seq=int(staged["seq"]),
                actor=_str(staged.get("actor")),
                changes=[
                    {"knob": c["knob"], "before": c.get("before"), "after": c.get("after")} for c in staged["changes"]
                ],
                was=was,
                now=now,
            )
        )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def replay(
    records: Iterable[Mapping[str, Any]],
    *,
    path: str = "",
    verified: bool = True,
    problem: dict[str, Any] | None = None,
    mode: str | None = None,
    policy: Policy | None = None,
    catalog: Catalog | None = None,
) -> Replay:
    """Replay ``records`` (chain order) without checking them: :func:`load` checks first."""
    recs = list(records)
    modes_seen = sorted({str(r["mode"]) for r in recs if isinstance(r.get("mode"), str)})
    chosen = mode or _mode_of_log(recs)
    out = Replay(
        path=path,
        verified=verified,
        problem=problem,
        records=len(recs),
        mode=chosen,
        modes_seen=modes_seen,
        rejudged=[] if policy is not None else None,
    )
    builder = _Builder(out, policy, catalog)
    current_mode: str | None = None
    for rec in recs:
        ts = rec.get("ts")
        if not isinstance(ts, int | float) or not isinstance(rec.get("seq"), int):
            continue
        out.first_ts = out.first_ts if out.first_ts is not None else float(ts)
        out.last_ts = float(ts)
        if rec.get("event") == "recovery" and isinstance(rec.get("mode"), str):
            current_mode = str(rec["mode"])
        rec_mode = rec.get("mode") if isinstance(rec.get("mode"), str) else current_mode
        if chosen is not None and rec_mode is not None and rec_mode != chosen:
            continue
        builder.feed(rec, rec_mode)
    return out


def parse_time(text: str) -> float:
    """Unix seconds from ``text``: a number of seconds, or an ISO 8601 time (UTC when it names no zone).

    Raises:
        ValueError: neither.
    """
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(ts: float | None) -> str:
    """``2026-11-30T06:02:00.250Z``, or ``-`` for None."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --------------------------------------------------------------------------- rendering
MARK_STYLE = {
    "apply": ("^", "tab:green"),
    "commit": ("o", "tab:blue"),
    "revert": ("v", "tab:orange"),
    "auto_revert": ("X", "tab:red"),
}
"""Marker and colour of each event in the plot."""


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def plot(result: Replay, out: Path, knobs: list[str] | None = None) -> Path:
    """A PNG of each knob's value over time (one panel per knob), with applies, commits,
    reverts and auto-reverts marked. Knobs whose values are not numbers are drawn as the
    index of each distinct value. Needs matplotlib (the ``arena`` extra).

    Raises:
        ModuleNotFoundError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [k for k in (knobs or sorted(result.timelines)) if k in result.timelines]
    start = result.first_ts or 0.0
    end = result.last_ts or start
    end = max(end, start + 1.0)
    fig, axes = plt.subplots(max(1, len(chosen)), 1, figsize=(9, 2.2 * max(1, len(chosen))), squeeze=False)
    for ax, knob in zip(axes[:, 0], chosen, strict=False):
        segs = result.timelines[knob]
        labels: dict[str, int] = {}

        def y(value: Any, labels: dict[str, int] = labels) -> float | None:
            number = _numeric(value)
            if number is not None or value is None:
                return number
            return float(labels.setdefault(str(value), len(labels)))

        xs: list[float] = []
        ys: list[float] = []
        for seg in segs:
            value = y(seg.value)
            since = start if seg.since is None else seg.since
            until = end if seg.until is None else seg.until
            if value is None:
                xs += [since, until]
                ys += [math.nan, math.nan]
                continue
            xs += [since, until]
            ys += [value, value]
        ax.plot([x - start for x in xs], ys, color="black", linewidth=1.2)
        for event, (marker, colour) in MARK_STYLE.items():
            pts = [(m.ts - start, y(m.value)) for m in result.marks.get(knob, []) if m.event == event]
            pts = [(x, v) for x, v in pts if v is not None]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=colour, label=event, zorder=3)
        if labels:
            ax.set_yticks(list(labels.values()), list(labels))
        ax.set_title(knob, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel(f"seconds since {iso(start)}")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


__all__ = [
    "MARK_STYLE",
    "VALUE_EVENTS",
    "Mark",
    "Rejudged",
    "Replay",
    "Segment",
    "iso",
    "load",
    "parse_time",
    "plot",
    "replay",
]
