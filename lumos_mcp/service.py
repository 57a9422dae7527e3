"""The one facade: stage -> policy -> approval -> apply -> commit/revert -> audit.

Tools, the CLI, the built-in agent and the speculator all go through a ``Service``, so every
write passes the same policy, journal and audit log, whoever asked for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import pydantic

from lumos_mcp.anchor import Anchor, head, publish
from lumos_mcp.approvals import Approval, ApprovalStore
from lumos_mcp.audit import AuditLog
from lumos_mcp.bounded import bounded, clip
from lumos_mcp.errors import (
    ApprovalInvalidError,
    ApprovalRequiredError,
    AuditError,
    GuardError,
    GuardMetricMissingError,
    InvalidGuardError,
    InvalidWindowError,
    JournalError,
    KnobError,
    LumosError,
    ModeError,
    PolicyDeniedError,
    StagedExpiredError,
    StateDirUnsafeError,
    StateLockedError,
    TelemetryError,
    TransactionStateError,
    UnknownTransactionError,
    WatchdogError,
)
from lumos_mcp.evidence import SUMMARY_SECTIONS, telemetry_summary
from lumos_mcp.guards import (
    Breach,
    Guard,
    GuardWatch,
    MetricSource,
    Sample,
    TelemetrySource,
    baseline,
    check_path,
    lookup,
    merge,
)
from lumos_mcp.history import HOUR_S, Histories, audit_records_since, rebuild
from lumos_mcp.kernelfs.backend import Backend, KnobStatus
from lumos_mcp.kernelfs.root import KernelRoot
from lumos_mcp.knobs import Catalog, default_catalog
from lumos_mcp.knobs.spec import Value
from lumos_mcp.persist import drift as persist_drift
from lumos_mcp.persist.state import CommittedKnob, audit_state, committed_state
from lumos_mcp.policy import (
    Change,
    Policy,
    Verdict,
    evaluate,
    evaluate_commit,
    load_policy,
    match_rule,
    referenced_knobs,
)
from lumos_mcp.privfs import check_state_dir, ensure_private_dir, open_private
from lumos_mcp.resources import policy_path
from lumos_mcp.telemetry.facade import Telemetry
from lumos_mcp.telemetry.perf import PerfStat
from lumos_mcp.txn import RecoveryReport, Restored, Transaction, TransactionManager, TxState
from lumos_mcp.txn.committed import has_state
from lumos_mcp.txn.journal import scan
from lumos_mcp.watchdog import Watchdog, lock_owner, mode_lock_path, take_lock, write_lock_owner

log = logging.getLogger(__name__)

Mode = Literal["observe", "sandbox", "live"]
PolicyRuleKeys = ("min", "max", "allow", "max_step_ratio", "approval", "approval_above_step_ratio", "cooldown_s")
MODES: tuple[Mode, ...] = ("observe", "sandbox", "live")
MAX_STAGED = 256
"""Staged (not yet applied) changes a server keeps; the oldest beyond this expire."""
_MAX_EXPIRED = 1024  # expired txids remembered, to answer staged_expired rather than "unknown"
_MAX_GUARD_REVERTS = 1024  # guard reverts' evidence remembered for the agent's next call on that txid
PROBATION_MARGIN_S = 5.0
"""A change on probation is armed this much past its probation's end: the server commits it at
the end, and only a server that is gone by then leaves it to the deadline (which reverts)."""
MAX_RATIONALE = 1000
"""Characters of an agent's rationale kept in the audit record."""
EVIDENCE_WINDOW_S = 10.0
"""The telemetry window an apply, commit or revert record summarises (its last seconds)."""
WATCHDOG_LOCK_WAIT_S = 5.0
"""How long a starting server waits while a dead server's watchdog holds the state directory."""


def default_state_dir() -> Path:
    """``$LUMOS_STATE_DIR``, else ``$XDG_STATE_HOME/lumos-mcp``, else ``~/.local/state/lumos-mcp``."""
    env = os.environ.get("LUMOS_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lumos-mcp"


@dataclass(frozen=True)
class ServiceConfig:
    mode: Mode = "sandbox"
    state_dir: Path = field(default_factory=default_state_dir)
    policy: Path | None = None
    """A policy file; None means the shipped ``latency`` policy in sandbox, ``default`` otherwise."""
    host_root: Path = Path("/")
    """Where the real kernel is read (telemetry, sandbox seeding); tests point it at a fake."""
    telemetry_root: Path | None = None
    """Where telemetry is read (default: host_root). Tests read the real host, write a fake."""
    cgroups: tuple[str, ...] = ()
    """cgroups whose knobs are listed (and, in sandbox, simulated when the host lacks them)."""
    telemetry_cgroups: tuple[str, ...] = ()
    """More cgroups whose CPU telemetry reads (besides ``cgroups``) without listing their knobs."""
    telemetry_interval_s: float = 1.0
    perf: bool = True
    watchdog: bool = False
    """Start a watchdog process while changes are armed, so their revert survives a SIGKILL of
    this process (`lumos_mcp.watchdog`). ``serve`` turns it on; in-process users need not."""
    anchor_interval_s: float | None = None
    """Publish the audit chain's head (syslog and ``anchor_file``) this often while it changes
    (`lumos_mcp.anchor`); None: never. ``serve`` sets it."""
    anchor_file: Path | None = None
    """Where anchors are appended (default: ``audit-anchors.jsonl`` in the state dir): copy it off the host."""


@dataclass
class StagedChange:
    tx: Transaction
    verdict: Verdict
    confirm_within_s: float
    actor: str
    touched_at: float = 0.0
    """When it was staged or last had an approval requested: it expires an approval lifetime later."""
    guards: tuple[Guard, ...] = ()
    """The guards that watch it once applied: the policy's for its knobs, tightened per change."""
    rationale: str | None = None
    """The agent's own words on why (clipped to ``MAX_RATIONALE``)."""


class Service:
    """Everything a tool or command can ask of lumos-mcp."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        clock: Callable[[], float] = time.time,
        catalog: Catalog | None = None,
        probe: Callable[[str], None] | None = None,
        metrics: MetricSource | None = None,
    ) -> None:
        self.config = config
        self.mode: Mode = config.mode
        self.clock = clock
        self.catalog = catalog or default_catalog()
        self.state_dir = config.state_dir
        ensure_private_dir(self.state_dir)  # 0700, ours, not reached through a link others can change
        check_state_dir(self.state_dir)  # and nothing in it is a link, someone else's, or writable by others
        self.host = KernelRoot(config.host_root)
        if self.mode == "live" and self.host.is_host and os.geteuid() != 0:
            raise ModeError("live writes to the host need root", mode="live")
        self.policy_file = config.policy or policy_path("latency" if self.mode == "sandbox" else "default")
        self.policy: Policy = load_policy(self.policy_file, self.catalog)
        self.audit = AuditLog(self.state_dir / "audit.jsonl", clock=clock)
        self.approvals = ApprovalStore(self.state_dir, clock=clock)
        self.kernel = self._kernel_root()
        self.backend = Backend(self.kernel, self.catalog)
        self.txns = TransactionManager(
            self.backend, self.state_dir / f"journal-{self.mode}.jsonl", clock=clock, probe=probe
        )
        self.telemetry = self._telemetry()
        self.metrics: MetricSource = metrics or TelemetrySource(self.telemetry)
        """Where guards read their samples (the sampler; tests give a fake)."""
        self._watches: dict[str, GuardWatch] = {}
        """txid -> the guards watching it while it is armed (or on probation)."""
        self._probation: dict[str, float] = {}
        """txid -> when its probation ends and its requested commit is recorded."""
        self.guard_reverts: dict[str, dict[str, Any]] = {}
        """txid -> the evidence of the guard that reverted it (for the agent's next call on it)."""
        self._guard_lock = threading.Lock()
        self._guard_loop_running = False
        """The per-sample guard loop runs (the deadline loop then leaves the guards to it)."""
        self._staged: dict[str, StagedChange] = {}
        self._expired: dict[str, bool] = {}  # txid -> dropped for age (True) or for room (False)
        self._histories = Histories()
        """Applied and committed changes for cooldowns and commits_per_hour, rebuilt at start."""
        self.speculator: Any = None
        """The running `lumos_mcp.speculator.Speculator`, if any (set by it; read by its tools)."""
        self.task_group: Any = None
        """The server lifespan's task group, where background work (the speculator) is started."""
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._mode_lock_fd: int | None = None
        self.recovery: RecoveryReport | None = None
        self.drift_at_start: persist_drift.DriftReport | None = None
        """What the drift check at start found (None before start, or when it could not read)."""
        self.drift_problem: str | None = None
        self._watchdog = Watchdog(self.state_dir, self.mode, self.kernel.base) if config.watchdog else None
        self._unaudited: list[tuple[str, dict[str, Any]]] = []
        """Audit records refused by a failing audit log while a deadline fired, to write later."""
        self.record_problem: str | None = None
        """The last journal or audit write that failed while reverting (None once all are written)."""
        self.deadline_loop_error: str | None = None
        """The last unexpected error the deadline loop survived (it logs it and goes on)."""
        self._anchored_at = float("-inf")
        self._anchored: Anchor | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._record_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def _kernel_root(self) -> KernelRoot:
        if self.mode != "sandbox":
            return self.host
        from lumos_mcp.sandbox import ensure_sandbox  # service-level helper, not a layer of its own

        return ensure_sandbox(self.state_dir / "sandbox", self.host, self.catalog, self.config.cgroups)

    def _telemetry(self) -> Telemetry:
        root = KernelRoot(self.config.telemetry_root) if self.config.telemetry_root else self.host
        perf = (
            PerfStat(interval_ms=int(self.config.telemetry_interval_s * 1000))
            if self.config.perf and shutil.which("perf")
            else None
        )
        return Telemetry(
            root,
            interval_s=self.config.telemetry_interval_s,
            cgroups=tuple(dict.fromkeys((*self.config.cgroups, *self.config.telemetry_cgroups)))
            if self.mode != "sandbox"
            else (),
            perf=perf,
        )

    def start(self) -> RecoveryReport:
        """Take the state directory's lock and recover what the journal shows unfinished.

        Raises:
            StateLockedError: another lumos-mcp server holds this state directory.
            JournalError: the journal cannot be opened.
        """
        self._acquire_lock()
        self._histories = self._rebuild_histories()
        self._seed_committed()
        report = self.txns.recover()
        self.recovery = report
        self.audit.append(
            "recovery",
            mode=self.mode,
            transactions=list(report.transactions),
            knobs=restored_data(report.knobs),
            committed_kept=report.committed_kept,
            journal_problems=list(report.journal_problems),
        )
        self._check_drift_at_start()
        return report

    def _seed_committed(self) -> None:
        """Give a journal without a state record (written before compaction kept commits) the
        commits the audit log remembers, once: from then on the journal alone is the committed truth."""
        result = scan(self.txns.journal_path)
        if has_state(result.records) or result.corrupt_lines:
            return
        try:
            found = audit_state(self.audit.path, self.mode)
        except AuditError as e:  # the journal's own commits still count; the next start tries again
            log.warning("committed state: the audit log could not be read: %s", e)
            return
        self.txns.seed_committed(found)

    def _check_drift_at_start(self) -> None:
        """Say (stderr, audit) when the host no longer runs what was committed: after a reboot the
        journal still says "committed" while the kernel is back at its defaults."""
        report = self.drift()
        self.drift_at_start = report
        if report is None or report.clean:
            return
        for d in report.drift:
            log.warning("drift: %s %s: %s", d.type, d.knob, d.detail)
        self.audit.append("drift", mode=self.mode, drift=[_jsonable(d.to_dict()) for d in report.drift])

    # ------------------------------------------------------------------ committed state
    def committed(self) -> list[CommittedKnob]:
        """What this mode has committed, knob by knob (`lumos_mcp.persist.state`).

        Raises:
            JournalError, AuditError: the journal (or the audit log it needs) cannot be read.
        """
        return committed_state(self.state_dir, self.mode, self.backend)

    def drift(self) -> persist_drift.DriftReport | None:
        """Drift of the committed state (None when the journal or audit log cannot be read:
        ``drift_problem`` says why)."""
        try:
            knobs = self.committed()
        except (JournalError, AuditError) as e:
            self.drift_problem = str(e)
            return None
        self.drift_problem = None
        return persist_drift.detect(knobs, self.backend, self.config.host_root)

    def _rebuild_histories(self) -> Histories:
        """The cooldowns and commit slots still running, from the audit log's apply and commit
        records: a new server keeps enforcing what an earlier one started.

        Raises:
            AuditError: the audit log cannot be read.
        """
        now = self.clock()
        cooldowns = [r.cooldown_s for r in (*self.policy.knobs.values(), *self.policy.speculation.knobs.values())]
        since = now - max(HOUR_S, *cooldowns)
        records = audit_records_since(self.audit.path, since)
        return rebuild(records, mode=self.mode, since=since, files_of=self._files_of)

    def _files_of(self, knob: str) -> tuple[str, ...]:
        """The files a knob writes here, or the knob id itself when it does not resolve now."""
        try:
            return self.backend.resolve(knob).files
        except KnobError:
            return (knob,)

    def shutdown(self, reason: str = "server_exit") -> list[Transaction]:
        """The server is stopping: nobody is left to commit, so revert every armed transaction
        now, through the journaled revert path, and audit each (``auto_revert`` with
        ``reason``). Committed transactions are never touched. Safe to call more than once.
        """
        reverted = []
        for tx, results in self.txns.revert_armed(reason):
            self._audit_revert(tx, results, reason)
            reverted.append(tx)
        self._retry_records()
        return reverted

    def close(self) -> None:
        """Release the state directory. Changes still armed stay armed in the journal: the
        watchdog (if any) restores them once this process is gone, else the next start does."""
        with self._close_lock:  # serve's stop timer may close from another thread
            if self._closed:
                return
            self._closed = True
        if self._watchdog is not None:
            self._watchdog.close(armed=self.txns.next_deadline() is not None)
        self.txns.close()
        for fd in (self._mode_lock_fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._mode_lock_fd = self._lock_fd = None

    @property
    def watchdog_pid(self) -> int | None:
        """The pid of the watchdog process keeping armed deadlines (None when none runs)."""
        return self._watchdog.pid if self._watchdog is not None else None

    def _acquire_lock(self) -> None:
        holder: list[str] = []

        def watchdog_holds(fd: int) -> bool:  # a dead server's watchdog restoring its changes: milliseconds
            holder[:] = lock_owner(fd)
            return holder[1] == "watchdog"

        fd = take_lock(self.state_dir / "server.lock", WATCHDOG_LOCK_WAIT_S, watchdog_holds)
        if fd is None:
            pid, mode = holder or ("unknown", "unknown")
            raise StateLockedError(f"in {mode} mode", path=str(self.state_dir), pid=pid)
        write_lock_owner(fd, self.mode)
        self._lock_fd = fd
        # a dead server's watchdog may be recovering this mode's journal (it takes this lock
        # without server.lock when a server of another mode held that): wait for it
        self._mode_lock_fd = take_lock(mode_lock_path(self.state_dir, self.mode), WATCHDOG_LOCK_WAIT_S)
        if self._mode_lock_fd is None:
            os.close(fd)
            self._lock_fd = None
            raise StateLockedError(
                f"its {self.mode} journal is being recovered", path=str(self.state_dir), pid="a watchdog"
            )

    async def run_deadlines(self, poll_s: float = 0.25) -> None:
        """Forever: revert armed transactions whose deadline passed (the server's own timer).

        It also hosts the server's background work: ``task_group`` is open while it runs (the
        speculator is started there), and everything in it stops with it.
        """
        async with anyio.create_task_group() as tg:
            self.task_group = tg
            if isinstance(self.metrics, TelemetrySource):
                tg.start_soon(self._guard_forever)
            try:
                await self._expire_forever(poll_s)
            finally:
                self.task_group = None
                if self.speculator is not None:
                    self.speculator.stop(revert=True)

    async def _expire_forever(self, poll_s: float) -> None:
        while True:
            due = self.txns.next_deadline()
            delay = poll_s if due is None else min(max(due - self.clock(), 0.0), poll_s)
            await anyio.sleep(delay)
            try:
                await anyio.to_thread.run_sync(self._tick)
            except Exception as e:  # the deadline loop's top level: it must outlive any one failure
                self.deadline_loop_error = f"{type(e).__name__}: {e}"
                log.exception("deadline loop: %s (the loop goes on)", e)

    async def _guard_forever(self) -> None:
        """Check the guards once per new sample, as soon as it is in. While this loop runs, the
        deadline loop's polls leave the guards to it (they checked them four times a second, to
        find nothing new three times out of four)."""
        sampler = self.telemetry.sampler
        last = -1.0
        self._guard_loop_running = True
        try:
            while True:
                snap = await sampler.wait_for_sample(after_t=last)
                last = snap.t
                if not self._watches:
                    continue
                try:
                    await anyio.to_thread.run_sync(self.check_guards)
                except Exception as e:  # the guard loop's top level: it must outlive any one failure
                    self.deadline_loop_error = f"{type(e).__name__}: {e}"
                    log.exception("guard loop: %s (the loop goes on)", e)
        finally:
            self._guard_loop_running = False

    def _tick(self) -> None:
        if not self._guard_loop_running:  # a source with no sampler to wait on (tests, the crash test)
            self.check_guards()
        self.finish_probations()
        self.expire_due()
        self._sync_watchdog()
        self.anchor_if_due()

    def anchor_if_due(self) -> Anchor | None:
        """Publish the audit head when ``anchor_interval_s`` has passed since the last one and
        the head moved; returns the anchor published, or None.

        Raises:
            AuditError: the log cannot be read or the anchor file cannot be written.
        """
        interval = self.config.anchor_interval_s
        now = self.clock()
        if interval is None or now - self._anchored_at < interval:
            return None
        self._anchored_at = now
        found = head(self.audit.path)
        if found is None or found == self._anchored:
            return None
        publish(found, to_file=self.config.anchor_file or self.state_dir / "audit-anchors.jsonl")
        self._anchored = found
        return found

    def _sync_watchdog(self) -> None:
        """A watchdog runs exactly while something is armed (a dead one is replaced)."""
        if self._watchdog is None:
            return
        with self._lock:
            if self.txns.next_deadline() is None:
                self._watchdog.release()
            else:
                self._watchdog.ensure()

    def expire_due(self) -> list[Transaction]:
        """Revert every armed transaction past its deadline, and audit each.

        Reverting wins over recording: a journal or audit write that fails (full disk, EIO)
        does not stop any revert. The records that could not be written are kept and written
        by a later call; until then ``status()["recording_problem"]`` and stderr say so.
        """
        reverted = []
        for tx, results in self.txns.expire_due():
            self._audit_revert(tx, results, "deadline")
            reverted.append(tx)
        self._retry_records()
        return reverted

    def _audit_revert(
        self, tx: Transaction, results: Sequence[Restored], reason: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        fields = {
            "tx": tx.id,
            "reason": reason,
            "knobs": restored_data(results),
            "values": restored_values(tx, results),
            "speculative": tx.speculative,
            "telemetry": self.evidence(),
            **(extra or {}),
        }
        if tx.notes:
            fields["notes"] = list(tx.notes)
        with self._record_lock:
            self._unaudited.append(("auto_revert", fields))

    # ------------------------------------------------------------------ guards
    def _guards_for(self, knobs: Sequence[str], requested: Sequence[Guard | Mapping[str, Any]]) -> tuple[Guard, ...]:
        """The guards that will watch a change of ``knobs``: the policy's, tightened by ``requested``.

        Raises:
            InvalidGuardError: a requested guard is malformed or names no signature path.
            GuardLoosensError: a requested guard would loosen the policy's.
            GuardMetricMissingError: a guard's metric has no value in the latest sample.
        """
        mine = [parse_guard(i, g) for i, g in enumerate(requested)]
        guards = merge(self.policy.guards.for_change(knobs), mine)
        if guards:
            latest = self.metrics.recent(1)
            for guard in guards:
                if latest and lookup(latest[-1][1], guard.metric) is not None:
                    continue
                raise _metric_missing(guard.metric, self.metrics.unavailable(), "it has no value in the latest sample")
        return tuple(guards)

    def _baselines(self, guards: Sequence[Guard]) -> tuple[dict[str, float | None], float]:
        """Each guarded metric's median over the last samples before apply, and the newest
        sample's time (later samples are the change's).

        Raises:
            GuardMetricMissingError: a relative guard's metric has no value in those samples.
        """
        recent = self.metrics.recent(self.policy.guards.baseline_samples)
        out: dict[str, float | None] = {}
        for guard in guards:
            if guard.metric not in out:
                out[guard.metric] = baseline([lookup(sig, guard.metric) for _, sig in recent])
            if guard.relative and out[guard.metric] is None:
                raise _metric_missing(guard.metric, self.metrics.unavailable(), "no sample before apply holds it")
        return out, (recent[-1][0] if recent else self.clock())

    def check_guards(self) -> list[Transaction]:
        """Feed every sample taken since the last check to the guards of each armed change, and
        revert each change whose guard breached for its hold, at once, through the deadline's
        journaled path (reverse order, verified read-back). Returns the reverted transactions."""
        breaches: list[tuple[str, Breach]] = []
        with self._guard_lock:
            for txid in list(self._watches):
                if self._state_of(txid) is not TxState.APPLIED:
                    del self._watches[txid]
                    self._probation.pop(txid, None)
            if not self._watches:
                return []
            samples = self.metrics.samples_after(min(w.last_t for w in self._watches.values()))
            for txid, watch in self._watches.items():
                for t, sig in samples:
                    if t <= watch.last_t:
                        continue
                    breach = watch.observe(Sample(t, {g.metric: lookup(sig, g.metric) for g in watch.guards}))
                    if breach is not None:
                        breaches.append((txid, breach))
                        break
        reverted = [self._revert_for_guard(txid, breach) for txid, breach in breaches]
        return [tx for tx in reverted if tx is not None]

    def _state_of(self, txid: str) -> TxState | None:
        try:
            return self.txns.get(txid).state
        except UnknownTransactionError:
            return None

    def _revert_for_guard(self, txid: str, breach: Breach) -> Transaction | None:
        detected = self.clock()
        # The evidence is in place before the state turns reverted, so whoever sees the state
        # (the agent's next call, get_status) also sees the guard; the timings are added after.
        self.guard_reverts[txid] = {**breach.as_data(), "detected_t": round(detected, 3)}
        done: list[tuple[Transaction, list[Restored]]] = []
        try:
            done = self.txns.revert_armed("guard", only={txid})
        finally:
            if not done:  # committed or reverted meanwhile, or the revert raised (the watch stays)
                self.guard_reverts.pop(txid, None)
        with self._guard_lock:
            self._watches.pop(txid, None)
            self._probation.pop(txid, None)
        if not done:
            return None
        tx, results = done[0]
        finished = self.clock()
        evidence = {
            **breach.as_data(),
            "detected_t": round(detected, 3),
            "revert_done_t": round(finished, 3),
            "reaction_s": round(max(0.0, finished - breach.first_breach_t), 3),
            "revert_s": round(max(0.0, finished - detected), 3),
        }
        self.guard_reverts[txid] = {**evidence, "knobs": restored_data(results)}
        while len(self.guard_reverts) > _MAX_GUARD_REVERTS:
            del self.guard_reverts[next(iter(self.guard_reverts))]
        log.warning("guard %s breached: %s reverted in %.3f s", breach.guard.text(), txid, evidence["reaction_s"])
        self._audit_revert(tx, results, "guard", extra={"guard": _jsonable(evidence)})
        self._retry_records()
        return tx

    def finish_probations(self) -> list[Transaction]:
        """Record the requested commits whose probation ended with no guard breached."""
        now = self.clock()
        due = [txid for txid, until in list(self._probation.items()) if until <= now]
        if not due:
            return []
        self.check_guards()  # a breach in the last samples wins over the commit
        done = []
        for txid in due:
            if self._probation.pop(txid, None) is None:
                continue
            try:
                done.append(self._commit_now(txid, "probation", count=False))
            except LumosError as e:  # stays armed: its deadline reverts it (never kept unverified)
                self.audit.append("commit_failed", tx=txid, actor="probation", error=_jsonable(e.to_dict()))
        return done

    def _raise_if_guard_reverted(self, txid: str) -> None:
        evidence = self.guard_reverts.get(txid)
        if evidence is not None and self._state_of(txid) is TxState.REVERTED:
            raise TransactionStateError(
                "a guard reverted it",
                txid=txid,
                state="reverted",
                wanted="applied",
                reverted_by="guard",
                guard=evidence,
            )

    def _retry_records(self) -> None:
        """Write the audit and journal records still waiting; report what still fails."""
        with self._record_lock:  # the deadline loop and a stopping server may both get here
            self._write_waiting_records()

    def _write_waiting_records(self) -> None:
        problems = []
        while self._unaudited:
            event, fields = self._unaudited[0]
            try:
                self.audit.append(event, **fields)
            except (AuditError, StateDirUnsafeError) as e:  # a link planted at the log is refused too
                problems.append(f"audit: {e}")
                break
            self._unaudited.pop(0)
        try:
            self.txns.retry_unrecorded()
        except JournalError as e:
            problems.append(f"journal: {e}")
        problem = "; ".join(problems) or None
        if problem is not None and problem != self.record_problem:
            log.error(
                "reverted, but %d audit and %d journal record(s) are not written yet: %s",
                len(self._unaudited),
                len(self.txns.unrecorded),
                problem,
            )
        self.record_problem = problem

    # ------------------------------------------------------------------ reading
    def tunables(self, group: str | None = None) -> list[KnobStatus]:
        """Every catalog knob on this host (parametrised ones per device and configured cgroup)."""
        names = tuple(dict.fromkeys((*self.config.cgroups, *self._policy_cgroups())))
        out = []
        for spec in self.catalog:
            if group and spec.group != group:
                continue
            for ref in self.backend.instances(spec.id, names):
                out.append(self.backend.status(ref))
        return out

    def _policy_cgroups(self) -> list[str]:
        names = []
        for key in self.policy.knobs:
            if key.startswith("cgroup.") and "*" not in key:
                names.append(key.split(".", 1)[1].rsplit(".", 1)[0])
        return names

    def policy_rule(self, knob: str) -> dict[str, Any] | None:
        """The policy's rule for a concrete knob id, as data (None: default-deny)."""
        try:
            kind = self.catalog.lookup(knob).spec.kind
        except KnobError:
            return None
        found = match_rule(self.policy, self.policy.knobs, knob, kind)
        if found is None:
            return None
        rule = found[1].model_dump(exclude_none=True)
        return {k: rule[k] for k in PolicyRuleKeys if k in rule}

    # ------------------------------------------------------------------ the loop
    def _refuse_in_observe(self, what: str) -> None:
        if self.mode == "observe":
            raise ModeError(f"{what} writes; restart with --mode sandbox or --mode live", mode="observe")

    def stage(
        self,
        changes: Mapping[str, object],
        *,
        confirm_within_s: float | None = None,
        speculative: bool = False,
        actor: str = "agent",
        guards: Sequence[Guard | Mapping[str, Any]] = (),
        rationale: str | None = None,
    ) -> StagedChange:
        """Validate a change without writing: types, units, hard ranges, then the policy, and
        the guards that will watch it (the policy's for its knobs, tightened by ``guards``).
        ``rationale`` (the agent's reason) is kept, clipped, in the ``stage`` audit record.

        Returns the staged transaction and the policy's verdict (denied changes are staged
        too, so the caller sees every denial at once, but they can never be applied).

        Raises:
            KnobError: an unknown knob, bad parameter, unavailable or locked knob, or bad value.
            InvalidGuardError, GuardLoosensError, GuardMetricMissingError: a guard is malformed,
                would loosen the policy's, or watches a metric with no value here.
        """
        try:
            tx = self.txns.stage(changes, speculative=speculative)
            watching = self._guards_for(tx.knobs(), guards)
        except (KnobError, GuardError) as e:
            self.audit.append("stage_rejected", actor=actor, changes=_jsonable(changes), error=_jsonable(e.to_dict()))
            raise
        context: dict[str, Value] = {}
        verdict = self._evaluate(tx, confirm_within_s, speculative, context)
        confirm = verdict.confirm_within_s
        now = self.clock()
        why = clip(rationale, MAX_RATIONALE) if rationale else None
        staged = StagedChange(
            tx=tx,
            verdict=verdict,
            confirm_within_s=confirm,
            actor=actor,
            touched_at=now,
            guards=watching,
            rationale=why,
        )
        with self._lock:
            self._staged[tx.id] = staged
            self._trim_staged(now)
        self.audit.append(
            "stage",
            tx=tx.id,
            actor=actor,
            digest=tx.digest,
            speculative=speculative,
            changes=[{"knob": c.knob, "before": c.before, "after": c.after} for c in tx.changes],
            **({"guards": [g.text() for g in watching]} if watching else {}),
            rationale=why,
            confirm_within_s=confirm_within_s,
            mode=self.mode,
        )
        self.audit.append(
            "verdict",
            tx=tx.id,
            allowed=verdict.allowed,
            approval_required=verdict.approval_required,
            denials=_denials(verdict),
            policy=self.policy.name,
            context=context,
        )
        return staged

    def _evaluate(
        self,
        tx: Transaction,
        confirm_within_s: float | None,
        speculative: bool,
        context: dict[str, Value] | None = None,
    ) -> Verdict:
        """The policy's verdict now; ``context`` receives the values of the other knobs its
        cross-field rules read (the verdict record keeps them, so replay can judge again)."""
        changes = [
            Change(
                knob=c.knob, kind=self.catalog.lookup(c.knob).spec.kind, before=c.before, after=c.after, files=c.files
            )
            for c in tx.changes
        ]
        current: dict[str, Value] = {c.knob: c.before for c in tx.changes}
        for knob in referenced_knobs(self.policy, changes):
            if knob not in current:
                # an unreadable knob stays unknown: cross-field rules fail closed on it
                with contextlib.suppress(KnobError):
                    current[knob] = self.backend.read(knob).value
                    if context is not None:
                        context[knob] = current[knob]
        return evaluate(
            self.policy,
            changes,
            current=current,
            history=self._histories.every if speculative else self._histories.agent,
            now=self.clock(),
            confirm_within_s=confirm_within_s,
            speculative=speculative,
        )

    def _trim_staged(self, now: float) -> None:
        """Forget staged changes past their use (caller holds ``_lock``): closed ones, staged
        ones older than the approval lifetime, and the oldest beyond ``MAX_STAGED``."""
        ttl = self.policy.global_.approval_lifetime_s
        for txid, st in list(self._staged.items()):
            if st.tx.state is TxState.STAGED:
                if now - st.touched_at > ttl:
                    self._expire_staged(txid, True)
            elif st.tx.state is not TxState.APPLIED:
                del self._staged[txid]  # committed, reverted or failed: its transaction tells the rest
        waiting = [txid for txid, st in self._staged.items() if st.tx.state is TxState.STAGED]
        for txid in waiting[: max(0, len(waiting) - MAX_STAGED)]:
            self._expire_staged(txid, False)

    def _expire_staged(self, txid: str, for_age: bool) -> None:
        del self._staged[txid]
        self._expired[txid] = for_age
        while len(self._expired) > _MAX_EXPIRED:
            del self._expired[next(iter(self._expired))]

    def staged(self, txid: str) -> StagedChange:
        """Raises: UnknownTransactionError, StagedExpiredError, TransactionStateError."""
        with self._lock:
            found = self._staged.get(txid)
            if found is not None and found.tx.state is TxState.STAGED:
                self._trim_staged(self.clock())
            for_age = self._expired.get(txid)
        if for_age is not None:
            reason = (
                f"unused for longer than the approval lifetime, {self.policy.global_.approval_lifetime_s:g} s"
                if for_age
                else f"more than {MAX_STAGED} changes were staged after it"
            )
            raise StagedExpiredError(txid=txid, reason=reason)
        tx = self.txns.get(txid)
        if found is None:
            raise TransactionStateError(
                "it was not staged by this server", txid=txid, state=tx.state.value, wanted="staged"
            )
        return found

    def request_approval(self, txid: str, requested_by: str = "agent") -> Approval:
        """Open (or return the open) approval for a staged change, for an operator to decide.

        Raises:
            TransactionStateError: not staged; PolicyDeniedError: the policy denies it anyway.
            StagedExpiredError: staged too long ago (see ``staged``).
        """
        staged = self._appliable(txid)
        staged.touched_at = self.clock()
        existing = self.approvals.find_usable(txid, staged.tx.digest)
        if existing is not None:
            return existing
        approval = self.approvals.request(
            txid,
            staged.tx.digest,
            summary=self.describe(staged),
            lifetime_s=self.policy.global_.approval_lifetime_s,
            requested_by=requested_by,
        )
        self.audit.append(
            "approval_requested", tx=txid, approval=approval.id, digest=staged.tx.digest, requested_by=requested_by
        )
        return approval

    def record_elicitation(self, txid: str, granted: bool, note: str = "") -> Approval:
        """Record a human's answer given through MCP elicitation (decline and cancel are False)."""
        staged = self._appliable(txid)
        staged.touched_at = self.clock()
        approval = self.approvals.record_elicited(
            txid,
            staged.tx.digest,
            self.describe(staged),
            granted=granted,
            lifetime_s=self.policy.global_.approval_lifetime_s,
        )
        self.audit.append(
            "approval_granted" if granted else "approval_denied",
            tx=txid,
            approval=approval.id,
            digest=staged.tx.digest,
            via="elicitation",
            note=note,
        )
        return approval

    def decide_approval(self, approval_id: str, grant: bool, by: str, note: str = "") -> Approval:
        """An operator's decision (``lumos-mcp approvals approve|deny``).

        Raises:
            ApprovalInvalidError: unknown, already decided, or expired.
        """
        return decide_approval(self.approvals, self.audit, approval_id, grant, by, note)

    def _appliable(self, txid: str) -> StagedChange:
        staged = self.staged(txid)
        if staged.tx.state is not TxState.STAGED:
            raise TransactionStateError(txid=txid, state=staged.tx.state.value, wanted="staged")
        if not staged.verdict.allowed:
            raise _denied(staged.verdict, txid)
        return staged

    def apply(self, txid: str, approval_id: str | None = None, actor: str = "agent") -> Transaction:
        """Write a staged, allowed (and, where the policy says so, approved) change, and arm
        its auto-revert deadline.

        Raises:
            ModeError: observe mode.
            StagedExpiredError: staged longer than the approval lifetime ago, or pushed out by
                ``MAX_STAGED`` newer staged changes: stage it again.
            PolicyDeniedError: the policy denies it (evaluated again now, whoever asks).
            ApprovalRequiredError, ApprovalInvalidError: approval missing, wrong, used or expired.
            ConflictError, ExternalChangeError, ApplyFailedError, JournalError: from the journaled write.
        """
        self._refuse_in_observe("apply")
        with self._lock:
            staged = self._appliable(txid)
            verdict = self._evaluate(staged.tx, staged.confirm_within_s, staged.tx.speculative)
            if not verdict.allowed:
                error = _denied(verdict, txid)
                self.audit.append("apply_refused", tx=txid, denials=error.fields["denials"])
                raise error
            approval = None
            if verdict.approval_required:
                approval = self._consume_approval(staged, approval_id)
            baselines, since = self._baselines(staged.guards) if staged.guards else ({}, 0.0)
            self._watch_before_arming(txid)
            try:
                # Last write wins over a speculative move only: it never overrides another's
                # pending change, and the speculator never overrides the agent's.
                tx = self.txns.apply(txid, staged.confirm_within_s, take_over=lambda holder: holder.speculative)
            except LumosError as e:
                # The state directory may be what failed (disk full, removed): an audit error
                # here must not hide the error that says why nothing was written.
                try:
                    self.audit.append("apply_failed", tx=txid, actor=actor, error=e.to_dict())
                except (AuditError, StateDirUnsafeError) as audit_error:
                    log.warning("apply_failed of %s not audited: %s", txid, audit_error)
                raise
            if staged.guards:
                with self._guard_lock:
                    self._watches[txid] = GuardWatch(staged.guards, baselines, since)
            for holder, knobs in tx.took_over.items():
                self.audit.append(
                    "superseded", tx=holder, by=txid, actor=actor, knobs=sorted(knobs), restores_on_revert="original"
                )
            now = self.clock()
            self._histories.record_apply(
                txid, [f for c in tx.changes for f in c.files], now, speculative=tx.speculative
            )
            # mode and files let a later server rebuild cooldowns and commit slots from this record
            self.audit.append(
                "apply",
                tx=txid,
                actor=actor,
                digest=tx.digest,
                approval=approval.id if approval else None,
                deadline=tx.deadline,
                speculative=tx.speculative,
                values={c.knob: c.after for c in tx.changes},
                originals={c.knob: c.before for c in tx.changes},
                mode=self.mode,
                files={c.knob: list(c.files) for c in tx.changes},
                **({"guards": [g.text() for g in staged.guards], "baselines": baselines} if staged.guards else {}),
                telemetry=self.evidence(),
            )
            return tx

    def _watch_before_arming(self, txid: str) -> None:
        """Start the watchdog before the write, so no moment exists where this change is
        armed and a SIGKILL of this process would leave it on the host.

        Raises:
            WatchdogError: the watchdog cannot be started (nothing is written).
        """
        if self._watchdog is None:
            return
        try:
            self._watchdog.ensure()
        except OSError as e:
            raise WatchdogError(e.strerror or str(e), tx=txid) from e

    def _consume_approval(self, staged: StagedChange, approval_id: str | None) -> Approval:
        tx = staged.tx
        if approval_id is None:
            usable = self.approvals.find_usable(tx.id, tx.digest)
            if usable is None or usable.status != "granted":
                raise ApprovalRequiredError(txid=tx.id, digest=tx.digest, reasons=list(staged.verdict.approval_reasons))
            approval_id = usable.id
        try:
            approval = self.approvals.consume(approval_id, tx.id, tx.digest)
        except ApprovalInvalidError as e:
            self.audit.append("approval_rejected", tx=tx.id, approval=approval_id, reason=e.fields.get("reason"))
            raise
        self.audit.append("approval_used", tx=tx.id, approval=approval.id, digest=tx.digest)
        return approval

    def rearm(self, txid: str, actor: str = "speculator") -> Transaction:
        """Give an applied speculative move another envelope deadline (it keeps helping).

        Raises:
            ModeError: observe mode.
            TransactionStateError: not applied, or not speculative.
            JournalError: the new deadline could not be journaled.
        """
        self._refuse_in_observe("rearm")
        self._raise_if_guard_reverted(txid)
        tx = self.txns.get(txid)
        if not tx.speculative:
            raise TransactionStateError(
                "only speculative moves are re-armed", txid=txid, state=tx.state.value, wanted="a speculative move"
            )
        confirm = (
            self._staged[txid].confirm_within_s if txid in self._staged else self.policy.speculation.confirm_within_s
        )
        tx = self.txns.rearm(txid, confirm)
        self.audit.append("rearm", tx=txid, actor=actor, deadline=tx.deadline, speculative=True)
        return tx

    def commit(self, txid: str, actor: str = "agent") -> Transaction:
        """Keep an applied change (disarms its deadline), within the policy's commits_per_hour.

        When the policy sets a guard probation and guards watch the change, the commit is
        recorded only once the probation passed with no breach: until then the change stays
        armed (state ``applied``, deadline just past the probation's end) and a breach reverts it.

        Raises:
            PolicyDeniedError: one more commit would break commits_per_hour (the change stays
                armed: commit later or let its deadline revert it).
            TransactionStateError: not applied; a guard revert carries ``reverted_by`` and ``guard``.
            ExternalChangeError, JournalError.
        """
        self._refuse_in_observe("commit")
        self._raise_if_guard_reverted(txid)
        with self._lock:
            tx = self.txns.get(txid)
            if tx.state is TxState.APPLIED and txid in self._probation:
                return tx  # asked before: it is on probation
            if tx.state is TxState.APPLIED:
                verdict = evaluate_commit(self.policy, history=self._histories.agent, now=self.clock())
                if not verdict.allowed:
                    error = _denied(verdict, txid)
                    self.audit.append("commit_refused", tx=txid, actor=actor, denials=error.fields["denials"])
                    raise error
                probation = self.policy.guards.probation_s
                if probation > 0 and txid in self._watches:
                    tx = self.txns.rearm(txid, probation + PROBATION_MARGIN_S)
                    self._probation[txid] = self.clock() + probation
                    self._histories.record_commit(txid, self.clock())  # its commits_per_hour slot, taken now
                    self.audit.append("commit_requested", tx=txid, actor=actor, probation_s=probation)
                    return tx
            return self._commit_now(txid, actor)

    def _commit_now(self, txid: str, actor: str, count: bool = True) -> Transaction:
        with self._lock:
            tx = self.txns.commit(txid)
            if count:
                self._histories.record_commit(txid, self.clock())
            self.audit.append(
                "commit",
                tx=txid,
                actor=actor,
                values={c.knob: c.after for c in tx.changes},
                mode=self.mode,
                telemetry=self.evidence(),
            )
            return tx

    def revert(self, txid: str, force: bool = False, actor: str = "agent") -> tuple[Transaction, list[Restored]]:
        """Restore an applied change's original values and verify them.

        Raises:
            TransactionStateError, ExternalChangeError (unless force).
        """
        self._refuse_in_observe("revert")
        self._raise_if_guard_reverted(txid)
        tx, results = self.txns.revert(txid, reason="requested", force=force)
        self.audit.append(
            "revert",
            tx=txid,
            actor=actor,
            force=force,
            knobs=restored_data(results),
            values=restored_values(tx, results),
            telemetry=self.evidence(),
        )
        return tx, results

    def evidence(self) -> dict[str, Any]:
        """The compact telemetry summary an apply, commit or revert record carries (see
        ``lumos_mcp.evidence``): the last ``EVIDENCE_WINDOW_S`` seconds of the sampler, or
        ``{"unavailable": code}`` when it holds too little. Never raises: a revert is recorded
        with or without its evidence."""
        try:
            signature = self.telemetry.signature(EVIDENCE_WINDOW_S, set(SUMMARY_SECTIONS))
        except TelemetryError as e:
            return {"unavailable": e.code}
        return telemetry_summary(signature)

    def applied_ago_s(self, txid: str) -> tuple[float, float]:
        """How long ago ``txid`` was applied and (if reverted) ended, in seconds (0 while it is in
        force): the windows ``compare_windows`` measures around it.

        Raises:
            UnknownTransactionError: no such transaction.
            InvalidWindowError: it was never applied.
        """
        tx = self.txns.get(txid)
        if tx.applied_at is None:
            raise InvalidWindowError(
                f"{txid} is {tx.state.value}: it was never applied", window="txid", start_ago_s=0.0, end_ago_s=0.0
            )
        now = self.clock()
        ended = tx.closed_at if tx.state in (TxState.REVERTED, TxState.FAILED) and tx.closed_at is not None else now
        return max(0.0, now - tx.applied_at), max(0.0, now - ended)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        now = self.clock()
        txs = self.txns.transactions()
        recording = self._recording_problem()
        return {
            "mode": self.mode,
            "policy": {"name": self.policy.name, "file": str(self.policy_file), "digest": self.policy.digest},
            "kernel": self.kernel.kernel_release if self.mode != "sandbox" else self.host.kernel_release,
            "state_dir": str(self.state_dir),
            "armed": [self._tx_info(t, now) for t in txs if t.state is TxState.APPLIED],
            "staged": [self._tx_info(t, now) for t in txs if t.state is TxState.STAGED],
            "recent": [self._tx_info(t, now) for t in txs if t.state not in (TxState.APPLIED, TxState.STAGED)][-10:],
            "pending_approvals": [a.id for a in self.approvals.list(status="pending")],
            # the MCP layer passes journal_problem through: a revert the journal or the audit
            # log has not recorded yet shows there too (details in recording_problem)
            "journal_problem": self.txns.journal_problem or _recording_summary(recording),
            "recording_problem": recording,
            "deadline_loop_error": self.deadline_loop_error,
            "compaction_problem": self.txns.compaction_problem,
            "drift": self._drift_status(),
        }

    def _drift_status(self) -> dict[str, Any]:
        report = self.drift()
        if report is None:
            return {"checked": 0, "clean": False, "drift": [], "problem": self.drift_problem}
        return {**report.to_dict(), "problem": None}

    def _recording_problem(self) -> dict[str, Any] | None:
        """Revert records that a failing journal or audit log has not taken yet (None: all written)."""
        if self.record_problem is None and not self._unaudited and not self.txns.unrecorded:
            return None
        return {
            "error": self.record_problem,
            "audit_records_waiting": len(self._unaudited),
            "journal_records_waiting": len(self.txns.unrecorded),
        }

    def _tx_info(self, tx: Transaction, now: float) -> dict[str, Any]:
        return {
            "txid": tx.id,
            "state": tx.state.value,
            "speculative": tx.speculative,
            "changes": [{"knob": c.knob, "before": c.before, "after": c.after, "unit": c.unit} for c in tx.changes],
            "digest": tx.digest,
            "deadline_in_s": round(tx.deadline - now, 3) if tx.deadline and tx.state is TxState.APPLIED else None,
            "outcome": tx.outcome,
            "reverted_by": tx.outcome if tx.state is TxState.REVERTED else None,
            "guard": self.guard_reverts.get(tx.id),
            "guards": [g.text() for g in watch.guards] if (watch := self._watches.get(tx.id)) else [],
            "probation_ends_in_s": round(self._probation[tx.id] - now, 3) if tx.id in self._probation else None,
        }

    def describe(self, staged: StagedChange) -> str:
        parts = [f"{c.knob}: {c.before!r} -> {c.after!r}{' ' + c.unit if c.unit else ''}" for c in staged.tx.changes]
        return f"[{self.mode}] " + "; ".join(parts)


def _recording_summary(problem: dict[str, Any] | None) -> str | None:
    if problem is None:
        return None
    return (
        f"reverted, but {problem['journal_records_waiting']} journal and {problem['audit_records_waiting']} "
        f"audit record(s) are not written yet: {problem['error']}"
    )


def server_lock_holder(state_dir: Path) -> tuple[str, str] | None:
    """``(pid, mode)`` of the server running on ``state_dir``, or None when none is."""
    try:
        fd = open_private(state_dir / "server.lock", os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return lock_owner(fd)
    finally:
        os.close(fd)


def journals_to_recover(state_dir: Path) -> list[Mode]:
    """The modes whose journal in ``state_dir`` shows an unfinished transaction or damage.

    Raises:
        JournalError: a journal exists but cannot be read.
    """
    found: list[Mode] = []
    for mode in MODES:
        result = scan(state_dir / f"journal-{mode}.jsonl")
        open_txs, _ = TransactionManager._replay(result.records)
        if open_txs or result.corrupt_lines:
            found.append(mode)
    return found


def restored_data(results: Sequence[Restored]) -> list[dict[str, str]]:
    """What a revert or recovery did to each knob, as data (audit records, tool results)."""
    return [{"knob": r.knob, "action": r.action, "detail": r.detail} for r in results]


def restored_values(tx: Transaction, results: Sequence[Restored]) -> dict[str, Value]:
    """The value each knob a revert restored (or found already restored) now holds: its original."""
    kept = {r.knob for r in results if r.action in ("restored", "unchanged")}
    return {c.knob: c.before for c in tx.changes if c.knob in kept}


def decide_approval(
    store: ApprovalStore, audit: AuditLog, approval_id: str, grant: bool, by: str, note: str = ""
) -> Approval:
    """Record an operator's decision and audit it. Needs no running server (the CLI calls it
    from another terminal; the store and the audit log are safe for two processes).

    Raises:
        ApprovalInvalidError: unknown, already decided, or expired.
    """
    approval = (store.grant if grant else store.deny)(approval_id, by, note)
    audit.append(
        "approval_granted" if grant else "approval_denied",
        tx=approval.txid,
        approval=approval.id,
        digest=approval.digest,
        via="operator",
        by=by,
        note=note,
    )
    return approval


def _denials(verdict: Verdict) -> list[dict[str, Any]]:
    """Every denial as data (rule, knob, value, limit, message), safe for the audit log."""
    return [_jsonable(d.to_dict()) for d in verdict.denials]


def _denied(verdict: Verdict, txid: str) -> PolicyDeniedError:
    return PolicyDeniedError("; ".join(d.message for d in verdict.denials), denials=_denials(verdict), tx=txid)


def _jsonable(value: Any) -> Any:
    # orjson (the audit log) stops at 64 bits, and a rejected 1 MiB value must not fill the log:
    # the refusal is still recorded, bounded, saying what was cut
    return bounded(value)


def parse_guard(index: int, given: Guard | Mapping[str, Any]) -> Guard:
    """A per-change guard, checked.

    Raises:
        InvalidGuardError: not a guard, a policy-only field, or a metric that is not a numeric
            path of the full signature.
    """
    if isinstance(given, Guard):
        guard = given
    else:
        try:
            guard = Guard.model_validate(given)
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            field = "/".join(str(p) for p in first["loc"])
            raise InvalidGuardError(first["msg"], index=index, field=field) from e
    if guard.knobs:
        raise InvalidGuardError(
            "'knobs' is for policy guards: a per-change guard watches its change", index=index, field="knobs"
        )
    reason = check_path(guard.metric)
    if reason is not None:
        raise InvalidGuardError(reason, index=index, field="metric")
    return guard


def _metric_missing(metric: str, unavailable: Mapping[str, str], detail: str) -> GuardMetricMissingError:
    parts = metric.split(".")
    heads = {".".join(parts[:n]) for n in range(1, len(parts) + 1)} | {"telemetry", "perf"}
    reasons = {k: v for k, v in unavailable.items() if k in heads or k.startswith(parts[0] + ".")}
    if parts[0] == "app":
        detail += "; report it first (report_app_metric) or scrape it"
    return GuardMetricMissingError(detail, metric=metric, unavailable=dict(list(reasons.items())[:10]))
