"""Prometheus metrics, built with the maintained client library (``prometheus_client``).

Two sources give the same families: a running server (:func:`service_facts`, served at
``/metrics`` on the HTTP transport behind its token) and a state directory with or without a
server (:func:`state_dir_facts`, ``lumos-mcp metrics`` for node_exporter's textfile collector).

Counters come from the audit log (counted again when it changes: the log is the truth and
survives restarts); gauges from the live service, or from the journal and approval store.

=================================  =====================================================
``lumos_transactions_total``       outcome: committed, reverted, auto_reverted, apply_failed,
                                   apply_refused, commit_refused
``lumos_auto_reverts_total``       cause: deadline, server_exit, recovery, a guard...
``lumos_policy_denials_total``     rule: each denial of a verdict, apply or commit refusal
``lumos_pending_approvals``        approvals waiting for an operator
``lumos_armed_transactions``       applied, auto-revert deadline running
``lumos_seconds_to_deadline``      tx: seconds left before that transaction auto-reverts
``lumos_journal_problems``         journal damage or unwritten records (0: none)
``lumos_knob_value``               knob, mode: the value now (kernel read; the log's when unreadable)
``lumos_knob_original_value``      knob, mode: the value before lumos-mcp first changed it
=================================  =====================================================
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lumos_mcp.audit import iter_records, log_files
from lumos_mcp.errors import KnobError, LumosError
from lumos_mcp.replay import replay

OUTCOMES = ("committed", "reverted", "auto_reverted", "apply_failed", "apply_refused", "commit_refused")
_OUTCOME_OF = {
    "commit": "committed",
    "revert": "reverted",
    "auto_revert": "auto_reverted",
    "apply_failed": "apply_failed",
    "apply_refused": "apply_refused",
    "commit_refused": "commit_refused",
}
MAX_LABEL = 120


@dataclass
class AuditFacts:
    """What the audit log counts, and each touched knob's original and last value by the log."""

    outcomes: Counter[str] = field(default_factory=Counter)
    causes: Counter[str] = field(default_factory=Counter)
    denials: Counter[str] = field(default_factory=Counter)
    originals: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    mode: str | None = None


@dataclass
class Facts:
    """Everything one scrape reports."""

    audit: AuditFacts
    pending_approvals: int
    deadlines_in_s: dict[str, float]
    """Armed txid -> seconds to its deadline."""
    journal_problems: int
    current: dict[str, Any]
    """Knob -> the value read now (knobs that could not be read are left out)."""


def audit_facts(path: Path) -> AuditFacts:
    """Count the audit log at ``path`` (one pass; a broken chain is counted as it reads).

    Raises:
        AuditError: a file cannot be read.
    """
    out = AuditFacts()
    if not Path(path).exists():
        return out
    records = list(iter_records(path))
    for rec in records:
        event = rec.get("event")
        if event in _OUTCOME_OF:
            out.outcomes[_OUTCOME_OF[str(event)]] += 1
        if event == "auto_revert":
            out.causes[str(rec.get("reason"))[:MAX_LABEL]] += 1
        elif event == "recovery":
            out.causes["recovery"] += len(rec.get("transactions") or [])
        if event in ("verdict", "apply_refused", "commit_refused"):
            for d in rec.get("denials") or []:
                if isinstance(d, dict):
                    out.denials[str(d.get("rule"))[:MAX_LABEL]] += 1
    result = replay(records)
    out.mode = result.mode
    for knob, segs in result.timelines.items():
        out.originals[knob] = segs[0].value
        out.last[knob] = segs[-1].value
    return out


class AuditCounter:
    """``audit_facts`` again only when the log changed (its files' sizes and times)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key: tuple[Any, ...] | None = None
        self._facts = AuditFacts()
        self._lock = threading.Lock()

    def facts(self) -> AuditFacts:
        """Raises: AuditError: a file cannot be read."""
        key = log_stamps(self.path)
        with self._lock:
            if key != self._key:
                self._facts = audit_facts(self.path)
                self._key = key
            return self._facts


def log_stamps(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Each file of the audit log at ``path`` with its size and mtime: changes when the log does.

    Raises:
        AuditError: the directory cannot be listed.
    """
    out = []
    for file in log_files(Path(path)):
        try:
            st = os.stat(file)
        except FileNotFoundError:
            out.append((str(file), -1, -1))
            continue
        out.append((str(file), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


class LumosCollector(Collector):
    """A collector over ``source``, called once per scrape."""

    def __init__(self, source: Callable[[], Facts]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        facts = self.source()
        audit = facts.audit
        tx = CounterMetricFamily("lumos_transactions", "Transactions by outcome (audit log).", labels=["outcome"])
        for outcome in OUTCOMES:
            tx.add_metric([outcome], audit.outcomes[outcome])
        yield tx
        causes = CounterMetricFamily("lumos_auto_reverts", "Auto-reverts by cause (audit log).", labels=["cause"])
        for cause, n in sorted(audit.causes.items()):
            causes.add_metric([cause], n)
        yield causes
        denials = CounterMetricFamily("lumos_policy_denials", "Policy denials by rule (audit log).", labels=["rule"])
        for rule, n in sorted(audit.denials.items()):
            denials.add_metric([rule], n)
        yield denials
        yield GaugeMetricFamily(
            "lumos_pending_approvals", "Approvals waiting for an operator.", facts.pending_approvals
        )
        yield GaugeMetricFamily(
            "lumos_armed_transactions",
            "Applied transactions whose auto-revert deadline runs.",
            len(facts.deadlines_in_s),
        )
        left = GaugeMetricFamily(
            "lumos_seconds_to_deadline", "Seconds before an armed transaction auto-reverts.", labels=["tx"]
        )
        for txid, seconds in sorted(facts.deadlines_in_s.items()):
            left.add_metric([txid[:MAX_LABEL]], seconds)
        yield left
        yield GaugeMetricFamily(
            "lumos_journal_problems", "Journal damage or records not yet written (0: none).", facts.journal_problems
        )
        mode = audit.mode or ""
        value = GaugeMetricFamily(
            "lumos_knob_value", "A touched knob's value now (numbers and booleans).", labels=["knob", "mode"]
        )
        original = GaugeMetricFamily(
            "lumos_knob_original_value", "A touched knob's value before lumos-mcp changed it.", labels=["knob", "mode"]
        )
        for knob in sorted(audit.originals):
            now = _number(facts.current.get(knob, audit.last.get(knob)))
            before = _number(audit.originals[knob])
            if now is not None:
                value.add_metric([knob[:MAX_LABEL], mode], now)
            if before is not None:
                original.add_metric([knob[:MAX_LABEL], mode], before)
        yield value
        yield original


def render(source: Callable[[], Facts]) -> bytes:
    """The Prometheus text exposition of one scrape of ``source``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LumosCollector(source))
    return generate_latest(registry)


def _read_all(read: Callable[[str], Any], knobs: Iterable[str]) -> dict[str, Any]:
    out = {}
    for knob in knobs:
        try:
            out[knob] = read(knob)
        except (KnobError, LumosError):
            continue  # gone or unreadable now: the log's last value stands in
    return out


def service_facts(service: Any, counter: AuditCounter) -> Facts:
    """Facts from a running ``Service`` (typed ``Any``: this module is imported by the service's callers)."""
    from lumos_mcp.txn import TxState

    audit = counter.facts()
    now = service.clock()
    deadlines = {
        t.id: round(t.deadline - now, 3)
        for t in service.txns.transactions()
        if t.state is TxState.APPLIED and t.deadline is not None
    }
    status_problems = [service.txns.journal_problem, service.record_problem, service.txns.compaction_problem]
    return Facts(
        audit=audit,
        pending_approvals=len(service.approvals.list(status="pending")),
        deadlines_in_s=deadlines,
        journal_problems=sum(1 for p in status_problems if p),
        current=_read_all(lambda k: service.backend.read(k).value, audit.originals),
    )


def state_dir_facts(state_dir: Path, *, host_root: Path = Path("/"), clock: Callable[[], float] = time.time) -> Facts:
    """Facts from a state directory, whether a server runs on it or not: the audit log, the
    approval store, each mode's journal (open transactions and their last deadline, damage),
    and the touched knobs read from the kernel of the log's mode (the sandbox tree in sandbox
    mode, ``host_root`` in live and observe mode).

    Raises:
        AuditError, JournalError, ApprovalStoreError: a file cannot be read.
    """
    from lumos_mcp.approvals import ApprovalStore
    from lumos_mcp.kernelfs.backend import Backend
    from lumos_mcp.kernelfs.root import KernelRoot
    from lumos_mcp.knobs import default_catalog
    from lumos_mcp.service import MODES
    from lumos_mcp.txn.journal import scan
    from lumos_mcp.txn.manager import TransactionManager

    state_dir = Path(state_dir)
    audit = audit_facts(state_dir / "audit.jsonl")
    now = clock()
    deadlines: dict[str, float] = {}
    problems = 0
    for mode in MODES:
        journal = state_dir / f"journal-{mode}.jsonl"
        if not journal.exists():
            continue
        result = scan(journal)
        problems += len(result.corrupt_lines)
        open_txs, _ = TransactionManager._replay(result.records)
        armed = {r.get("tx"): r.get("deadline") for r in result.records if r.get("t") == "armed"}
        for txid in open_txs:
            deadline = armed.get(txid)
            if isinstance(deadline, int | float):
                deadlines[txid] = round(float(deadline) - now, 3)
    root = state_dir / "sandbox" if audit.mode == "sandbox" else Path(host_root)
    current: dict[str, Any] = {}
    if audit.originals and root.is_dir():
        backend = Backend(KernelRoot(root), default_catalog())
        current = _read_all(lambda k: backend.read(k).value, audit.originals)
    return Facts(
        audit=audit,
        pending_approvals=len(ApprovalStore(state_dir).list(status="pending")),
        deadlines_in_s=deadlines,
        journal_problems=problems,
        current=current,
    )


__all__ = [
    "OUTCOMES",
    "AuditCounter",
    "AuditFacts",
    "Facts",
    "LumosCollector",
    "audit_facts",
    "log_stamps",
    "render",
    "service_facts",
    "state_dir_facts",
]
