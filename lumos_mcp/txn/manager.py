"""Transactions: stage, apply (journaled, verified, armed with a deadline), commit, revert,
auto-revert and crash recovery.

The journal tells the truth about every write: a ``begin`` record holding every original
value is durable before the first write, and a ``write`` intent is durable before each knob
is touched. Recovery restores every knob of a transaction that was begun but neither
committed nor reverted; committed ones stay.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from lumos_mcp.errors import (
    ApplyFailedError,
    ConflictError,
    ExternalChangeError,
    InvalidValueError,
    JournalError,
    KnobError,
    LumosError,
    ReadbackMismatchError,
    TransactionStateError,
    UnknownTransactionError,
)
from lumos_mcp.kernelfs.backend import Backend, Resolved
from lumos_mcp.knobs import codec
from lumos_mcp.knobs.spec import Value
from lumos_mcp.txn import committed
from lumos_mcp.txn.journal import Journal, JournalScan, scan

Clock = Callable[[], float]
Probe = Callable[[str], None]


class TxState(StrEnum):
    STAGED = "staged"
    APPLIED = "applied"
    COMMITTED = "committed"
    REVERTED = "reverted"
    FAILED = "failed"


@dataclass
class KnobChange:
    knob: str
    before: Value
    after: Value
    unit: str | None
    files: tuple[str, ...]
    codec: str
    raw_before: tuple[str, ...]
    written: bool = False
    raw_after: tuple[str, ...] = ()
    """What the files showed right after our write (differs from the target if the kernel clamped)."""
    raw_found: tuple[str, ...] = ()
    """What the files held when this transaction took the knob over from a speculative one
    (that transaction's value): restoring over it is ours too."""


@dataclass
class Transaction:
    id: str
    created_at: float
    changes: list[KnobChange]
    digest: str
    state: TxState = TxState.STAGED
    speculative: bool = False
    applied_at: float | None = None
    deadline: float | None = None
    closed_at: float | None = None
    outcome: str = ""
    notes: list[str] = field(default_factory=list)
    took_over: dict[str, list[str]] = field(default_factory=dict)
    """txid -> knobs this transaction took over from applied transactions (last write wins)."""

    def knobs(self) -> list[str]:
        return [c.knob for c in self.changes]


@dataclass(frozen=True)
class Restored:
    """What happened to one knob during a revert or recovery."""

    knob: str
    action: str  # "restored" | "unchanged" | "external_change" | "error" | "refused" (recovery: the catalog disagrees)
    detail: str = ""


@dataclass(frozen=True)
class RecoveryReport:
    transactions: tuple[str, ...]
    knobs: tuple[Restored, ...]
    committed_kept: int
    journal_problems: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not self.journal_problems and all(k.action != "error" for k in self.knobs)


def change_digest(changes: list[KnobChange]) -> str:
    """sha256 over the exact change (knob, before, after), so an approval binds to it."""
    body = [[c.knob, c.before, c.after] for c in changes]
    return hashlib.sha256(orjson.dumps(body)).hexdigest()


def _same_text(a: str, b: str) -> bool:
    return codec.restorable(a) == codec.restorable(b)


class TransactionManager:
    """Owns every knob write. Thread-safe; all deadlines come from the injected clock."""

    def __init__(
        self,
        backend: Backend,
        journal_path: Path,
        clock: Clock = time.time,
        probe: Probe | None = None,
        keep_closed: int = 200,
        compact_after_bytes: int = 256 * 1024,
    ) -> None:
        self.backend = backend
        self.journal_path = journal_path
        self.clock = clock
        self.probe: Probe = probe or (lambda label: None)
        self.keep_closed = keep_closed
        self._lock = threading.RLock()
        self._txs: dict[str, Transaction] = {}
        self._holders: dict[str, str] = {}  # file -> txid of the applied transaction holding it
        self._journal: Journal | None = None
        self._journal_problem: str | None = None
        self.compact_after_bytes = compact_after_bytes
        """Compact the journal while running once this many bytes were appended since the last
        compaction (closed transactions' records, mostly): its size stays bounded."""
        self._compacted_size = 0
        self._recovering = False
        self.compaction_problem: str | None = None
        """Why the last compaction while running failed (the journal itself stayed usable)."""
        self.unrecorded: list[dict[str, Any]] = []
        """Revert records the journal refused (a full disk): restored on the host, not yet journaled."""

    # ------------------------------------------------------------------ journal
    @property
    def journal_problem(self) -> str | None:
        """Why new writes are refused, if they are: corruption recovery found, or a journal
        that broke while running (a fragment it could not cut, its file replaced or removed)."""
        if self._journal_problem is None and self._journal is not None:
            return self._journal.broken
        return self._journal_problem

    @journal_problem.setter
    def journal_problem(self, problem: str | None) -> None:
        self._journal_problem = problem

    @property
    def journal(self) -> Journal:
        """The open journal.

        Raises:
            JournalError: the journal could not be opened, or recovery found it corrupt.
        """
        if self.journal_problem is not None:
            raise JournalError(self.journal_problem + "; refusing new writes", path=str(self.journal_path))
        if self._journal is None:
            self._journal = Journal(self.journal_path)
        return self._journal

    def _log(self, record: dict[str, Any]) -> None:
        record.setdefault("ts", self.clock())
        self.journal.append(record)
        if record["t"] in ("commit", "reverted") and not self._recovering:
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        journal = self._journal
        if journal is None or journal.size - self._compacted_size <= self.compact_after_bytes:
            return
        try:
            self.compact()
        except JournalError as e:  # the journal stands as it was (or is broken: journal_problem says so)
            self.compaction_problem = str(e)
            self._compacted_size = journal.size  # try again after as many bytes more

    def compact(self) -> bool:
        """Rewrite the journal keeping only what the open transactions need: each one's begin
        record, one write intent per knob it still owns, and its latest deadline; and, first, one
        ``state`` record folding every commit (`lumos_mcp.txn.committed`: one entry per knob, so
        the committed truth survives and the size stays bounded). Closed transactions' records
        go. Crash-safe (write, fsync, rename, fsync the directory): a kill
        at any point leaves the old journal or the new one, and both recover the same.

        Returns False, leaving the journal as it is, when it holds something compaction cannot
        prove safe to drop (corrupt or malformed records, a torn tail).

        Raises:
            JournalError: the journal is unusable, or the new file could not be put in place.
        """
        with self._lock:
            journal = self.journal
            result = scan(self.journal_path)
            replay = _replay(result.records)
            if result.corrupt_lines or result.torn_tail or replay.problems:
                self._compacted_size = journal.size
                return False
            armed = {r["tx"]: r for r in result.records if r.get("t") == "armed" and r.get("tx") in replay.open}
            keep = self._state_records(result.records)
            for txid, (begin, written) in replay.open.items():
                keep.extend(_open_records(txid, begin, written))
                if txid in armed:
                    keep.append(armed[txid])
            journal.rewrite(keep, probe=lambda step: self.probe(f"compact:{step}"))
            self._compacted_size = journal.size
            self.compaction_problem = None
            return True

    def _state_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The state record a rewrite of ``records`` starts with: none when the journal had none
        and commits nothing (a journal that never committed stays empty)."""
        knobs = committed.fold(records)
        if not knobs and not committed.has_state(records):
            return []
        return [committed.state_record(knobs, self.clock())]

    def committed_state(self) -> dict[str, committed.Entry]:
        """What the journal shows committed, knob by knob (`lumos_mcp.txn.committed.fold`).

        Raises:
            JournalError: the journal cannot be read.
        """
        with self._lock:
            return committed.fold(scan(self.journal_path).records)

    def seed_committed(self, knobs: dict[str, committed.Entry]) -> None:
        """Journal a state record for commits the journal itself no longer holds (an earlier
        compaction dropped them; the audit log kept them), so the journal alone tells the whole
        committed state from now on. Written even when ``knobs`` is empty: it marks the journal
        as complete.

        Raises:
            JournalError: the record could not be written.
        """
        with self._lock:
            self.journal.append(committed.state_record(knobs, self.clock()))

    # ------------------------------------------------------------------ queries
    def get(self, txid: str) -> Transaction:
        """Raises: UnknownTransactionError."""
        with self._lock:
            tx = self._txs.get(txid)
            if tx is None:
                raise UnknownTransactionError(txid=txid)
            return tx

    def transactions(self) -> list[Transaction]:
        with self._lock:
            return sorted(self._txs.values(), key=lambda t: t.created_at)

    def holder_of(self, knob: str) -> str | None:
        """The applied transaction holding ``knob``'s files, if any."""
        with self._lock:
            res = self.backend.resolve(knob)
            return next((self._holders[f] for f in res.files if f in self._holders), None)

    def next_deadline(self) -> float | None:
        with self._lock:
            deadlines = [
                t.deadline for t in self._txs.values() if t.state is TxState.APPLIED and t.deadline is not None
            ]
            return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ stage
    def stage(self, changes: Mapping[str, object], *, speculative: bool = False) -> Transaction:
        """Validate and normalise a change without writing; record before-values and a digest.

        Raises:
            InvalidValueError: empty change, or a value the knob's codec rejects.
            UnknownKnobError, InvalidParameterError, KnobUnavailableError, KnobLockedError: per knob.
        """
        if not changes:
            raise InvalidValueError("a change needs at least one knob", knob="", value="{}")
        staged: list[KnobChange] = []
        seen_files: set[str] = set()
        for knob_id, wanted in changes.items():
            res = self.backend.resolve(knob_id)
            if seen_files & set(res.files):
                raise InvalidValueError("two entries of this change write the same file", knob=knob_id, value="")
            seen_files.update(res.files)
            after = codec.normalize(res.ref.spec, wanted)
            reading = self.backend.read(res)
            options = self.backend.options(res)
            if options and after not in options:
                raise InvalidValueError(f"this kernel offers {list(options)}", knob=knob_id, value=str(after))
            staged.append(
                KnobChange(
                    knob=res.ref.id,
                    before=reading.value,
                    after=after,
                    unit=res.ref.spec.unit,
                    files=res.files,
                    codec=res.codec,
                    raw_before=reading.raw,
                )
            )
        tx = Transaction(
            id="tx-" + secrets.token_hex(4),
            created_at=self.clock(),
            changes=staged,
            digest=change_digest(staged),
            speculative=speculative,
        )
        with self._lock:
            self._txs[tx.id] = tx
            self._trim()
        return tx

    # ------------------------------------------------------------------ apply
    def apply(
        self, txid: str, confirm_within_s: float, take_over: Callable[[Transaction], bool] | None = None
    ) -> Transaction:
        """Write a staged transaction through the journal, read back, and arm its deadline.

        ``take_over(holder)`` says whether a knob held by another applied transaction may be
        taken from it (last write wins). A knob taken over keeps the holder's original as the
        value to restore: this transaction inherits the holder's duty to put back what was
        there before either wrote, and the holder drops the knob without restoring it. The
        hand-over is part of this transaction's ``begin`` record, one durable line, so no crash
        can leave the knob owned by neither (see docs/speculator.md).

        Raises:
            TransactionStateError: not staged.
            ConflictError: another applied transaction holds one of its knobs (and may not be taken over).
            ExternalChangeError: a knob changed since staging (stage again).
            ApplyFailedError: a write failed; what was written has been rolled back.
            JournalError: the journal cannot be written; nothing was written to the kernel.
        """
        with self._lock:
            tx = self.get(txid)
            if tx.state is not TxState.STAGED:
                raise TransactionStateError(txid=txid, state=tx.state.value, wanted="staged")
            resolved = [self._resolved(c) for c in tx.changes]
            taken: dict[str, KnobChange] = {}  # knob -> the holder's change it takes over
            holders: dict[str, Transaction] = {}
            for change, res in zip(tx.changes, resolved, strict=True):
                holder_id = next((self._holders[f] for f in res.files if f in self._holders), None)
                if holder_id is None:
                    continue
                holder = self._txs[holder_id]
                if take_over is None or not take_over(holder):
                    raise ConflictError(knob=change.knob, holder=holder_id)
                # Only the same knob id is taken over: an alias of its file (cpu_shares over
                # cpu_weight) would inherit an original in the other id's units.
                held = next((c for c in holder.changes if c.knob == change.knob and c.written), None)
                if held is None or held.files != change.files:
                    raise ConflictError(knob=change.knob, holder=holder_id)
                taken[change.knob] = held
                holders[change.knob] = holder
            for change, res in zip(tx.changes, resolved, strict=True):
                now = self.backend.read(res)
                found = taken.get(change.knob)
                if found is None:
                    if now.value != change.before:
                        raise ExternalChangeError(
                            "since it was staged; stage again",
                            knob=change.knob,
                            expected=change.before,
                            actual=now.value,
                        )
                    change.raw_before = now.raw
                    continue
                if now.value != found.after:
                    raise ExternalChangeError(
                        "its holder's value was changed outside lumos-mcp",
                        knob=change.knob,
                        expected=found.after,
                        actual=now.value,
                    )
                change.raw_found = now.raw
                change.raw_before = found.raw_before
                change.before = found.before
            tx.took_over = {}
            for knob, holder in holders.items():
                tx.took_over.setdefault(holder.id, []).append(knob)
            self.probe("apply:before-begin")
            self._log(
                {
                    "t": "begin",
                    "tx": tx.id,
                    "digest": tx.digest,
                    "speculative": tx.speculative,
                    "knobs": [
                        {
                            "knob": c.knob,
                            "files": list(c.files),
                            "codec": c.codec,
                            "raw": list(c.raw_before),
                            "after": c.after,
                            **({"found": list(c.raw_found)} if c.knob in taken else {}),
                        }
                        for c in tx.changes
                    ],
                    **({"takes_over": tx.took_over} if tx.took_over else {}),
                }
            )
            # The begin record made the hand-over durable: the holders drop the knobs, and this
            # transaction owns restoring them from now on, whether or not its write happens.
            for change in tx.changes:
                if change.knob in taken:
                    change.written = True
            for holder_id, knobs in tx.took_over.items():
                self._drop(self._txs[holder_id], set(knobs), reason=f"superseded by {tx.id}")
            self.probe("apply:after-begin")
            for index, (change, res) in enumerate(zip(tx.changes, resolved, strict=True)):
                try:
                    self._log({"t": "write", "tx": tx.id, "knob": change.knob})
                    self.probe(f"apply:after-intent:{index}")
                    change.written = True
                    self._write(change, res, index)
                    self.probe(f"apply:after-write:{index}")
                except LumosError as e:
                    self._rollback(tx, resolved, reason="apply_failed")
                    tx.state = TxState.FAILED
                    tx.outcome = f"{e.code}: {e}"
                    tx.closed_at = self.clock()
                    raise ApplyFailedError(str(e), txid=tx.id, knob=change.knob, cause=e.to_dict()) from e
            tx.applied_at = self.clock()
            tx.deadline = tx.applied_at + confirm_within_s
            self._log({"t": "armed", "tx": tx.id, "deadline": tx.deadline})
            self.probe("apply:after-armed")
            tx.state = TxState.APPLIED
            for res in resolved:
                for f in res.files:
                    self._holders[f] = tx.id
            return tx

    def _write(self, change: KnobChange, res: Resolved, index: int) -> None:
        texts = codec.encode(res.codec, res.ref.spec, change.after)
        for n, (file, text) in enumerate(zip(res.files, texts, strict=True)):
            self.backend.write_file(res, file, text)
            self.probe(f"apply:after-file:{index}:{n}")
        after = self.backend.read(res)
        change.raw_after = after.raw
        if after.value != change.after:
            raise ReadbackMismatchError(knob=res.ref.id, expected=change.after, actual=after.value)

    def _resolved(self, change: KnobChange) -> Resolved:
        res = self.backend.resolve(change.knob)
        if res.files != change.files:
            raise ExternalChangeError(
                "its kernel files moved", knob=change.knob, expected=change.files, actual=res.files
            )
        return res

    def _recorded(self, change: KnobChange) -> Resolved:
        """The files this transaction wrote, as recorded, without resolving the knob again: a
        knob can stop resolving while armed (its cgroup went away), and that must not stop the
        other knobs from being restored."""
        return Resolved(ref=self.backend.catalog.lookup(change.knob), files=change.files, codec=change.codec)

    # ------------------------------------------------------------------ restore paths
    def _restore(self, tx: Transaction, resolved: list[Resolved], label: str, force: bool = False) -> list[Restored]:
        """Restore written knobs in reverse order. A knob whose files hold neither our original
        nor our target was changed by someone else: it is reported and left as found, unless
        ``force``."""
        results: list[Restored] = []
        for index in reversed(range(len(tx.changes))):
            change, res = tx.changes[index], resolved[index]
            if not change.written:
                continue
            try:
                results.append(self._restore_one(change, res, force))
            except KnobError as e:
                results.append(Restored(change.knob, "error", str(e)))
            self.probe(f"{label}:after-restore:{index}")
        return results

    def _restore_one(self, change: KnobChange, res: Resolved, force: bool = False) -> Restored:
        if self.backend.is_task(res):  # each task its own original: kernelfs/tasks.py
            seen = change.raw_after + change.raw_found
            done = self.backend.restore_tasks(res, change.raw_before, change.after, seen, force)
            return Restored(change.knob, done.action, done.detail)
        live = tuple(self.backend.root.read_text(f, knob=change.knob) for f in res.files)
        target = codec.encode(res.codec, res.ref.spec, change.after)
        # what the kernel showed after our write is ours too, even if it clamped the value
        shown = change.raw_after or target
        found = change.raw_found or change.raw_before
        ours = all(
            _same_text(now, o) or _same_text(now, t) or _same_text(now, a) or _same_text(now, f)
            for now, o, t, a, f in zip(live, change.raw_before, target, shown, found, strict=True)
        )
        if not ours and not force:
            now = self.backend.read(res).value
            return Restored(change.knob, "external_change", f"found {now!r}, expected {change.after!r}; left as found")
        if all(_same_text(now, o) for now, o in zip(live, change.raw_before, strict=True)):
            return Restored(change.knob, "unchanged")
        self.backend.write_raw(res, change.raw_before)
        return Restored(change.knob, "restored")

    def _rollback(
        self,
        tx: Transaction,
        resolved: list[Resolved],
        reason: str,
        force: bool = False,
        unrecorded: list[dict[str, Any]] | None = None,
    ) -> list[Restored]:
        # Rollback must happen even when the journal cannot be written: restoring originals is
        # always safe, and an unrecorded restore is redone (idempotently) by recovery.
        # ``unrecorded`` collects the completion record when it could not be written, so the
        # caller can write it later (`retry_unrecorded`).
        try:
            self._log({"t": "revert", "tx": tx.id, "reason": reason})
        except JournalError as e:
            tx.notes.append(f"revert intent not journaled: {e}")
        results = self._restore(tx, resolved, "rollback", force)
        failed = [r for r in results if r.action == "error"]
        if not failed:
            record = {"t": "reverted", "tx": tx.id, "reason": reason, "ts": self.clock()}
            try:
                self._log(record)
            except JournalError as e:
                tx.notes.append(f"revert completion not journaled: {e}")
                if unrecorded is not None:
                    unrecorded.append(record)
        else:
            tx.notes.extend(f"rollback of {r.knob} failed: {r.detail}" for r in failed)
        return results

    # ------------------------------------------------------------------ commit / revert
    def commit(self, txid: str) -> Transaction:
        """Keep an applied transaction's values.

        Raises:
            TransactionStateError: not applied (already committed, reverted or expired).
            ExternalChangeError: a knob no longer holds what we wrote; nothing is committed.
            JournalError: the commit could not be journaled; the transaction stays armed.
        """
        with self._lock:
            tx = self.get(txid)
            if tx.state is not TxState.APPLIED:
                raise TransactionStateError(txid=txid, state=tx.state.value, wanted="applied")
            for change in tx.changes:
                if not change.written:  # superseded: a newer transaction owns it now
                    continue
                now = self.backend.value_now(self._resolved(change))
                if now is not None and now != change.after:
                    raise ExternalChangeError("refusing to commit", knob=change.knob, expected=change.after, actual=now)
            self.probe("commit:before-record")
            self._log({"t": "commit", "tx": tx.id})
            self.probe("commit:after-record")
            tx.state = TxState.COMMITTED
            tx.closed_at = self.clock()
            tx.outcome = "committed"
            self._release(tx)
            return tx

    def revert(self, txid: str, reason: str = "requested", force: bool = False) -> tuple[Transaction, list[Restored]]:
        """Restore an applied transaction's originals, in reverse order, and verify them.

        Without ``force``, a knob someone else changed since we wrote it stops the revert
        before anything is written; with ``force`` such knobs are restored too.

        Raises:
            TransactionStateError: not applied.
            ExternalChangeError: a knob was changed by someone else (and not ``force``).
        """
        with self._lock:
            tx = self.get(txid)
            if tx.state is not TxState.APPLIED:
                raise TransactionStateError(txid=txid, state=tx.state.value, wanted="applied")
            resolved = [self._resolved(c) for c in tx.changes]
            if not force:
                for change, res in zip(tx.changes, resolved, strict=True):
                    if not change.written:  # superseded: not ours to restore
                        continue
                    now = self.backend.value_now(res)
                    if now is not None and now != change.after:
                        raise ExternalChangeError(
                            "revert with force to overwrite it", knob=change.knob, expected=change.after, actual=now
                        )
            self.probe(f"revert:{reason}:before-record")
            results = self._rollback(tx, resolved, reason=reason, force=force)
            self.probe(f"revert:{reason}:after-record")
            tx.state = TxState.REVERTED
            tx.closed_at = self.clock()
            tx.outcome = reason
            self._release(tx)
            return tx, results

    def expire_due(self) -> list[tuple[Transaction, list[Restored]]]:
        """Revert every applied transaction past its deadline (the server's auto-revert).

        A knob someone else changed meanwhile is left as found and reported. A journal that
        cannot be written does not stop it: the knobs are restored, and the completion records
        that could not be written wait in ``unrecorded`` for `retry_unrecorded`.
        """
        return self.revert_armed("deadline", due_by=self.clock())

    def revert_armed(
        self, reason: str, due_by: float | None = None, only: Collection[str] | None = None
    ) -> list[tuple[Transaction, list[Restored]]]:
        """Revert every applied transaction (whose deadline is at or before ``due_by``, if
        given; among ``only``, if given) through the journaled rollback, as the deadline does:
        ``reason`` is journaled (``deadline``, ``server_exit``, ``guard``). Committed
        transactions are never touched."""
        done = []
        with self._lock:
            now = self.clock()
            due = [
                t
                for t in self._txs.values()
                if t.state is TxState.APPLIED
                and (due_by is None or (t.deadline is not None and t.deadline <= due_by))
                and (only is None or t.id in only)
            ]
            for tx in due:
                self.probe(f"{reason}:before-revert")
                resolved = [self._recorded(c) for c in tx.changes]
                results = self._rollback(tx, resolved, reason=reason, unrecorded=self.unrecorded)
                self.probe(f"{reason}:after-revert")
                tx.state = TxState.REVERTED
                tx.closed_at = now
                tx.outcome = reason
                self._release(tx)
                done.append((tx, results))
        return done

    def retry_unrecorded(self) -> None:
        """Write the revert records a failing journal refused earlier, oldest first.

        Raises:
            JournalError: the journal still refuses them (they stay waiting).
        """
        with self._lock:
            while self.unrecorded:
                self._log(self.unrecorded[0])
                self.unrecorded.pop(0)

    def rearm(self, txid: str, confirm_within_s: float) -> Transaction:
        """Move an applied transaction's deadline to ``confirm_within_s`` from now (journaled).

        Recovery restores every uncommitted transaction whatever its deadline, so a re-arm
        never widens what a crash can leave behind.

        Raises:
            TransactionStateError: not applied.
            JournalError: the new deadline could not be journaled; the old one stands.
        """
        with self._lock:
            tx = self.get(txid)
            if tx.state is not TxState.APPLIED:
                raise TransactionStateError(txid=txid, state=tx.state.value, wanted="applied")
            deadline = self.clock() + confirm_within_s
            self._log({"t": "armed", "tx": tx.id, "deadline": deadline})
            tx.deadline = deadline
            return tx

    def supersede(self, txid: str, knobs: set[str]) -> None:
        """Drop ``knobs`` from an applied transaction without restoring them (a newer write won).

        The journal records it, so recovery will not restore them either.

        Raises:
            TransactionStateError: not applied.
        """
        with self._lock:
            tx = self.get(txid)
            if tx.state is not TxState.APPLIED:
                raise TransactionStateError(txid=txid, state=tx.state.value, wanted="applied")
            self._log({"t": "supersede", "tx": tx.id, "knobs": sorted(knobs)})
            self._drop(tx, knobs, reason="superseded")

    def _drop(self, tx: Transaction, knobs: set[str], reason: str) -> None:
        """Forget ``knobs`` of an applied transaction (already journaled by the caller); close
        it as superseded when nothing of it is left."""
        for change in tx.changes:
            if change.knob in knobs:
                change.written = False
                for f in change.files:
                    if self._holders.get(f) == tx.id:
                        del self._holders[f]
        if not any(c.written for c in tx.changes):
            try:
                self._log({"t": "commit", "tx": tx.id})
            except JournalError as e:  # recovery already knows: the supersede/begin record dropped them
                tx.notes.append(f"close not journaled: {e}")
            tx.state = TxState.COMMITTED
            tx.closed_at = self.clock()
            tx.outcome = reason

    def _release(self, tx: Transaction) -> None:
        for f in [f for f, holder in self._holders.items() if holder == tx.id]:
            del self._holders[f]

    def _trim(self) -> None:
        closed = [t for t in self._txs.values() if t.state not in (TxState.APPLIED, TxState.STAGED)]
        staged = [t for t in self._txs.values() if t.state is TxState.STAGED]
        for group in (closed, staged):
            for t in sorted(group, key=lambda t: t.created_at)[: max(0, len(group) - self.keep_closed)]:
                del self._txs[t.id]

    # ------------------------------------------------------------------ recovery
    def recover(self) -> RecoveryReport:
        """At start: restore every knob of every begun-but-unfinished transaction, keep
        committed ones, then compact the journal.

        A corrupt journal (bad records before the tail) is recovered as far as its intact
        records go; the server then refuses new writes until an operator looks. Recovery writes
        only what the catalog resolves today: a record whose files, codec or values the catalog
        does not confirm is refused (reported, never written), whatever the record says.
        """
        with self._lock:
            self._recovering = True
            try:
                return self._recover()
            finally:
                self._recovering = False

    def _recover(self) -> RecoveryReport:
        with self._lock:
            result: JournalScan = scan(self.journal_path)
            problems = []
            if result.corrupt_lines:
                problems.append(f"corrupt records at lines {result.corrupt_lines[:10]}")
            if result.torn_tail:
                problems.append("torn final record ignored (its act was never acknowledged)")
            replay = _replay(result.records)
            problems.extend(replay.problems)
            restored: list[Restored] = []
            unfinished: list[dict[str, Any]] = []
            for txid, (begin, written) in replay.open.items():
                tx, resolved, outcome = self._rebuild(begin, written)
                problems.extend(f"{txid}: {r.knob}: {r.detail}" for r in outcome if r.action == "refused")
                self.probe("recover:before-record")
                self._log({"t": "revert", "tx": txid, "reason": "recovery"})
                outcome.extend(self._restore(tx, resolved, "recover"))
                restored.extend(outcome)
                if any(r.action == "error" for r in outcome):
                    # kept as the next start needs it: the begin and one intent per written knob
                    unfinished.extend(_open_records(txid, begin, written))
                    continue
                self._log({"t": "reverted", "tx": txid, "reason": "recovery"})
                self.probe("recover:after-record")
            if result.corrupt_lines:
                self.journal_problem = problems[0]
            else:
                keep = self._state_records(result.records) + unfinished
                self.journal.rewrite(keep, probe=lambda step: self.probe(f"recover:rewrite:{step}"))
                self._compacted_size = self.journal.size
            return RecoveryReport(
                transactions=tuple(replay.open),
                knobs=tuple(restored),
                committed_kept=replay.committed,
                journal_problems=tuple(problems),
            )

    @staticmethod
    def _replay(records: list[dict[str, Any]]) -> tuple[dict[str, tuple[dict[str, Any], list[str]]], int]:
        """Open transactions (txid -> begin record, knobs it still owns) and how many committed."""
        replay = _replay(records)
        return replay.open, replay.committed

    def _rebuild(self, begin: dict[str, Any], written: list[str]) -> tuple[Transaction, list[Resolved], list[Restored]]:
        """The written knobs of a journaled transaction, each resolved again through the
        catalog as apply resolves it, never from the files the record names.

        Returns the transaction (only its confirmed written knobs), their resolutions, and a
        "refused" or "error" result for each written knob that cannot be restored: refused when
        the record disagrees with the catalog (it is dropped), error when the knob does not
        resolve on this kernel today (a cgroup gone: kept for the next start).
        """
        changes: list[KnobChange] = []
        resolved: list[Resolved] = []
        outcome: list[Restored] = []
        for entry in begin["knobs"]:
            knob = entry.get("knob")
            if knob not in written:
                continue
            try:
                confirmed = self._confirm(entry)
            except _Refused as e:
                outcome.append(Restored(str(knob)[:200], "refused", str(e)))
                continue
            except KnobError as e:
                outcome.append(Restored(str(knob), "error", f"does not resolve today: {e}"))
                continue
            changes.append(confirmed[0])
            resolved.append(confirmed[1])
        digest = begin.get("digest")
        tx = Transaction(
            id=begin["tx"],
            created_at=0.0,
            changes=changes,
            digest=digest if isinstance(digest, str) else "",
        )
        return tx, resolved, outcome

    def _confirm(self, entry: dict[str, Any]) -> tuple[KnobChange, Resolved]:
        """One begin record's knob, checked against what the catalog resolves today.

        Raises:
            _Refused: the record names other files or another codec than the catalog, or holds
                values the knob's codec does not read.
            KnobError: the knob does not resolve on this kernel today.
        """
        try:
            ref = self.backend.catalog.lookup(entry.get("knob"))
        except KnobError as e:
            raise _Refused(f"not a knob of the catalog ({e.code})") from e
        res = self.backend.resolve(ref)
        files, codec_name = entry.get("files"), entry.get("codec")
        if files != list(res.files):
            raise _Refused(f"the record names files {str(files)[:300]}, the catalog resolves {list(res.files)}")
        if codec_name != res.codec:
            raise _Refused(f"the record names codec {str(codec_name)[:50]}, the catalog resolves {res.codec}")
        raw = _texts(entry.get("raw"), res, "original")
        found = _texts(entry.get("found", []), res, "taken-over value") if entry.get("found") else ()
        try:
            after = codec.normalize(ref.spec, entry.get("after"))
        except InvalidValueError as e:
            raise _Refused(f"its target is not a value of this knob ({e})") from e
        change = KnobChange(
            knob=ref.id,
            before=codec.decode(res.codec, ref.spec, raw),
            after=after,
            unit=ref.spec.unit,
            files=res.files,
            codec=res.codec,
            raw_before=raw,
            written=True,
            raw_found=found,
        )
        return change, res

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


class _Refused(Exception):
    """A journal record the catalog does not confirm (internal to recovery: it becomes a
    "refused" result and a reported problem, never a write)."""


def _texts(value: object, res: Resolved, what: str) -> tuple[str, ...]:
    """File texts from a journal record: one single line per file, read by the knob's codec.

    Raises:
        _Refused: anything else.
    """
    if not isinstance(value, list) or len(value) != len(res.files) or not all(isinstance(t, str) for t in value):
        raise _Refused(f"its {what} is not one text per file of the knob")
    texts = tuple(value)
    if any("\n" in t.rstrip("\n") or "\x00" in t or len(t) > 4096 for t in texts):
        raise _Refused(f"its {what} is not the single line a kernel file shows")
    try:
        codec.decode(res.codec, res.ref.spec, texts)
    except (InvalidValueError, ValueError) as e:
        raise _Refused(f"its {what} {str(texts)[:100]} does not read as this knob's value") from e
    return texts


@dataclass
class _Replay:
    open: dict[str, tuple[dict[str, Any], list[str]]] = field(default_factory=dict)
    """txid -> (its begin record, the knobs it wrote and still owns), in begin order."""
    committed: int = 0
    problems: list[str] = field(default_factory=list)


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _well_formed(record: dict[str, Any]) -> bool:
    kind = record.get("t")
    if kind == "begin":
        knobs, takes = record.get("knobs"), record.get("takes_over", {})
        return (
            isinstance(knobs, list)
            and all(isinstance(k, dict) for k in knobs)
            and isinstance(takes, dict)
            and all(_str_list(v) for v in takes.values())
        )
    if kind == "write":
        return isinstance(record.get("knob"), str)
    if kind == "supersede":
        return _str_list(record.get("knobs"))
    return True


def _replay(records: list[dict[str, Any]]) -> _Replay:
    """Which transactions the journal shows begun and not finished, and which knobs each
    still owns (written by it or taken over from another, not superseded since)."""
    out = _Replay()
    begun: dict[str, int] = {}
    for n, r in enumerate(records, start=1):
        kind, txid = r.get("t"), r.get("tx")
        if not isinstance(txid, str):
            continue
        if not _well_formed(r):
            out.problems.append(f"malformed {str(kind)[:20]} record of {txid[:40]} (intact record {n}) ignored")
            continue
        if kind == "begin":
            taken: list[str] = []
            for holder, knobs in (r.get("takes_over") or {}).items():
                taken.extend(knobs)
                if holder in out.open:
                    held = out.open[holder]
                    out.open[holder] = (held[0], [k for k in held[1] if k not in set(knobs)])
            out.open[txid] = (r, taken)
            begun[txid] = n
        elif kind == "write" and txid in out.open:
            out.open[txid][1].append(r["knob"])
        elif kind == "supersede" and txid in out.open:
            dropped = set(r["knobs"])
            out.open[txid] = (out.open[txid][0], [k for k in out.open[txid][1] if k not in dropped])
        elif kind == "commit" and txid in out.open:
            # a committed value stays: a transaction begun earlier and still open (its restore
            # failed) no longer owns what this one wrote over it, so no start restores over it
            begin, written = out.open.pop(txid)
            files = _files_of(begin, written)
            for other in [t for t in out.open if begun[t] < begun[txid]]:
                their_begin, theirs = out.open[other]
                out.open[other] = (
                    their_begin,
                    [k for k in theirs if k not in written and not _files_of(their_begin, [k]) & files],
                )
            out.committed += 1
        elif kind == "reverted" and txid in out.open:
            del out.open[txid]
    return out


def _files_of(begin: dict[str, Any], knobs: list[str]) -> set[str]:
    """The files a begin record names for ``knobs`` (two knob ids can be views of one file)."""
    return {f for k in begin["knobs"] if k.get("knob") in knobs and _str_list(k.get("files")) for f in k["files"]}


def _open_records(txid: str, begin: dict[str, Any], written: list[str]) -> list[dict[str, Any]]:
    """What recovery needs of an open transaction: its begin record and one write intent per
    knob it still owns."""
    return [begin, *({"t": "write", "tx": txid, "knob": k} for k in dict.fromkeys(written))]
