"""Persistent approvals, shared between processes through the state directory.

The MCP server asks (``request``); an operator in another terminal decides
(``lumos-mcp approvals grant ID``); the server then spends the approval once
(``consume``), and only for the transaction and digest it was given for.

Storage: ``state_dir/approvals.json``. Every operation holds ``fcntl.flock`` on
``state_dir/approvals.lock`` (exclusive for changes, shared for reads); a change rewrites
the file atomically (temp file in the same directory, fsync, ``os.replace``, fsync of the
directory). The store writes no audit records: the service does that. Both files are 0600,
opened without following a symlink (``lumos_mcp.privfs``).

Pruning: every change also drops closed approvals (denied, expired, used) that ended more
than ``retention_s`` ago (default a day), and all but the newest ``keep_closed`` (default
200) of the others, so the file, and every read of it, stays small. Pending and granted
approvals are never dropped; the audit log keeps the history of every approval.

Expiry is computed from the injected clock. A ``pending`` or ``granted`` approval whose
``expires_at`` has passed is shown as ``expired`` by every read; ``expire_due`` persists
that status and returns the approvals it changed, so the service can audit each once.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from lumos_mcp.errors import ApprovalInvalidError, ApprovalStoreError
from lumos_mcp.privfs import atomic_write_private, ensure_private_dir, open_private, read_private

Status = Literal["pending", "granted", "denied", "expired", "used"]
Reason = Literal["unknown", "pending", "granted", "denied", "expired", "used", "digest_mismatch", "txid_mismatch"]

STORE_FILE = "approvals.json"
LOCK_FILE = "approvals.lock"
DEFAULT_ELICITED_LIFETIME_S = 300.0
DEFAULT_RETENTION_S = 24 * 3600.0
"""How long a closed (denied, expired, used) approval stays in the store after it ended."""
DEFAULT_KEEP_CLOSED = 200
"""At most this many closed approvals stay in the store (the newest)."""


class Approval(BaseModel):
    """One approval, bound to a transaction id and the digest of its staged change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    txid: str
    digest: str
    summary: str
    requested_by: str
    created_at: float
    expires_at: float
    status: Status
    decided_by: str | None = None
    decided_at: float | None = None
    note: str = ""
    used_at: float | None = None

    def is_expired(self, now: float) -> bool:
        """Whether the approval's lifetime is over at ``now`` (whatever its status)."""
        return now >= self.expires_at


class _StoreFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    approvals: builtins.list[Approval] = []


def _ended_at(approval: Approval) -> float:
    """When a closed approval stopped mattering: used, decided (denied) or expired."""
    if approval.used_at is not None:
        return approval.used_at
    if approval.status == "denied":
        return approval.decided_at if approval.decided_at is not None else approval.created_at
    return approval.expires_at


def _view(approval: Approval, now: float) -> Approval:
    """The approval as a reader should see it: live but past expiry means expired."""
    if approval.status in ("pending", "granted") and approval.is_expired(now):
        return approval.model_copy(update={"status": "expired"})
    return approval


class ApprovalStore:
    """Approvals in ``state_dir``, safe across threads and processes.

    Raises:
        ApprovalStoreError: the state directory cannot be created.
    """

    def __init__(
        self,
        state_dir: Path,
        clock: Callable[[], float] = time.time,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        keep_closed: int = DEFAULT_KEEP_CLOSED,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STORE_FILE
        self._lock_path = self.state_dir / LOCK_FILE
        self._clock = clock
        self._thread_lock = threading.Lock()
        self.retention_s = retention_s
        self.keep_closed = keep_closed
        ensure_private_dir(self.state_dir)

    # ----------------------------------------------------------------------- storage
    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with self._thread_lock:
            try:
                fd = open_private(self._lock_path, os.O_RDWR | os.O_CREAT)
            except OSError as exc:
                raise ApprovalStoreError(exc.strerror or "cannot open lock", path=str(self._lock_path)) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield
            finally:
                os.close(fd)  # also releases the flock

    def _load(self) -> builtins.list[Approval]:
        try:
            data = read_private(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ApprovalStoreError(exc.strerror or "cannot read", path=str(self.path)) from exc
        try:
            return _StoreFile.model_validate_json(data).approvals
        except ValidationError as exc:
            raise ApprovalStoreError(
                f"unreadable: {exc.error_count()} validation error(s)", path=str(self.path)
            ) from exc

    def _save(self, approvals: builtins.list[Approval]) -> None:
        kept = self._prune(approvals)
        data = orjson.dumps(_StoreFile(approvals=kept).model_dump(mode="json"), option=orjson.OPT_INDENT_2)
        try:
            atomic_write_private(self.path, data)
        except OSError as exc:
            raise ApprovalStoreError(exc.strerror or "cannot write", path=str(self.path)) from exc

    def _prune(self, approvals: builtins.list[Approval]) -> builtins.list[Approval]:
        """Drop closed approvals (denied, expired, used) that ended more than ``retention_s``
        ago, and all but the newest ``keep_closed`` of the rest; live ones are always kept.
        The audit log keeps the record of every approval the store forgets."""
        now = self._clock()
        closed = [a for a in approvals if _view(a, now).status not in ("pending", "granted")]
        recent = [a for a in closed if now - _ended_at(a) <= self.retention_s]
        recent.sort(key=_ended_at)
        keep = {a.id for a in recent[max(0, len(recent) - self.keep_closed) :]}
        dropped = {a.id for a in closed} - keep
        return [a for a in approvals if a.id not in dropped] if dropped else approvals

    def _new_id(self, approvals: builtins.list[Approval]) -> str:
        taken = {a.id for a in approvals}
        while True:
            candidate = "ap-" + secrets.token_hex(4)
            if candidate not in taken:
                return candidate

    @staticmethod
    def _index(approvals: builtins.list[Approval], approval_id: str) -> int:
        for i, a in enumerate(approvals):
            if a.id == approval_id:
                return i
        raise ApprovalInvalidError(approval_id=approval_id, reason="unknown")

    # ----------------------------------------------------------------------- API
    def request(self, txid: str, digest: str, summary: str, lifetime_s: float, requested_by: str = "agent") -> Approval:
        """Create a pending approval for ``txid``/``digest`` that lives ``lifetime_s`` seconds.

        If a pending, or granted and unused, approval for the same txid and digest is still
        alive, that one is returned instead of a duplicate.

        Raises:
            ValueError: ``lifetime_s`` is not positive.
            ApprovalStoreError: the store cannot be read or written.
        """
        if not lifetime_s > 0:
            raise ValueError(f"lifetime_s must be positive, got {lifetime_s!r}")
        with self._locked(exclusive=True):
            approvals = self._load()
            now = self._clock()
            for a in reversed(approvals):
                if a.txid == txid and a.digest == digest and _view(a, now).status in ("pending", "granted"):
                    return a
            approval = Approval(
                id=self._new_id(approvals),
                txid=txid,
                digest=digest,
                summary=summary,
                requested_by=requested_by,
                created_at=now,
                expires_at=now + lifetime_s,
                status="pending",
            )
            self._save([*approvals, approval])
            return approval

    def record_elicited(
        self,
        txid: str,
        digest: str,
        summary: str,
        granted: bool,
        by: str = "elicitation",
        *,
        lifetime_s: float = DEFAULT_ELICITED_LIFETIME_S,
        requested_by: str = "agent",
    ) -> Approval:
        """Store an approval decided at once through MCP elicitation (granted or denied).

        It follows the same rules as any other afterwards: it expires after ``lifetime_s``
        and ``consume`` spends it once.

        Raises:
            ValueError: ``lifetime_s`` is not positive.
            ApprovalStoreError: the store cannot be read or written.
        """
        if not lifetime_s > 0:
            raise ValueError(f"lifetime_s must be positive, got {lifetime_s!r}")
        with self._locked(exclusive=True):
            approvals = self._load()
            now = self._clock()
            approval = Approval(
                id=self._new_id(approvals),
                txid=txid,
                digest=digest,
                summary=summary,
                requested_by=requested_by,
                created_at=now,
                expires_at=now + lifetime_s,
                status="granted" if granted else "denied",
                decided_by=by,
                decided_at=now,
            )
            self._save([*approvals, approval])
            return approval

    def get(self, approval_id: str) -> Approval:
        """The approval, with ``expired`` shown for a live one past its expiry.

        Raises:
            ApprovalInvalidError: reason ``unknown``.
            ApprovalStoreError: the store cannot be read.
        """
        with self._locked(exclusive=False):
            approvals = self._load()
        return _view(approvals[self._index(approvals, approval_id)], self._clock())

    def list(self, status: Status | None = None) -> builtins.list[Approval]:
        """All approvals, oldest first, optionally only those whose (shown) status is ``status``.

        Raises:
            ApprovalStoreError: the store cannot be read.
        """
        with self._locked(exclusive=False):
            approvals = self._load()
        now = self._clock()
        views = [_view(a, now) for a in approvals]
        return [a for a in views if status is None or a.status == status]

    def find_usable(self, txid: str, digest: str) -> Approval | None:
        """The newest granted, unexpired, unused approval for exactly this txid and digest.

        Raises:
            ApprovalStoreError: the store cannot be read.
        """
        for a in reversed(self.list(status="granted")):
            if a.txid == txid and a.digest == digest:
                return a
        return None

    def grant(self, approval_id: str, by: str, note: str = "") -> Approval:
        """Grant a pending, unexpired approval.

        Raises:
            ApprovalInvalidError: reason ``unknown``, or the approval's current status
                (``granted``, ``denied``, ``expired``, ``used``).
            ApprovalStoreError: the store cannot be read or written.
        """
        return self._decide(approval_id, "granted", by, note)

    def deny(self, approval_id: str, by: str, note: str = "") -> Approval:
        """Deny a pending, unexpired approval.

        Raises:
            ApprovalInvalidError: reason ``unknown``, or the approval's current status
                (``granted``, ``denied``, ``expired``, ``used``).
            ApprovalStoreError: the store cannot be read or written.
        """
        return self._decide(approval_id, "denied", by, note)

    def _decide(self, approval_id: str, status: Literal["granted", "denied"], by: str, note: str) -> Approval:
        with self._locked(exclusive=True):
            approvals = self._load()
            i = self._index(approvals, approval_id)
            now = self._clock()
            current = _view(approvals[i], now)
            if current.status != "pending":
                raise ApprovalInvalidError(approval_id=approval_id, reason=current.status)
            approvals[i] = current.model_copy(
                update={"status": status, "decided_by": by, "decided_at": now, "note": note}
            )
            self._save(approvals)
            return approvals[i]

    def consume(self, approval_id: str, txid: str, digest: str) -> Approval:
        """Spend a granted approval for exactly this txid and digest, once, before it expires.

        Raises:
            ApprovalInvalidError: with ``reason`` one of ``unknown``, ``txid_mismatch``,
                ``digest_mismatch``, ``used``, ``denied``, ``expired``, ``pending``
                (checked in that order).
            ApprovalStoreError: the store cannot be read or written.
        """
        with self._locked(exclusive=True):
            approvals = self._load()
            i = self._index(approvals, approval_id)
            now = self._clock()
            current = _view(approvals[i], now)
            reason: Reason | None = None
            if current.txid != txid:
                reason = "txid_mismatch"
            elif current.digest != digest:
                reason = "digest_mismatch"
            elif current.status != "granted":
                reason = current.status
            if reason is not None:
                raise ApprovalInvalidError(approval_id=approval_id, reason=reason)
            approvals[i] = current.model_copy(update={"status": "used", "used_at": now})
            self._save(approvals)
            return approvals[i]

    def expire_due(self) -> builtins.list[Approval]:
        """Persist ``expired`` on every pending or granted approval past its expiry.

        Returns the approvals changed by this call (each is returned by one call only), so
        the caller can audit ``approval_expired`` once per approval.

        Raises:
            ApprovalStoreError: the store cannot be read or written.
        """
        with self._locked(exclusive=True):
            approvals = self._load()
            now = self._clock()
            changed: builtins.list[Approval] = []
            for i, a in enumerate(approvals):
                view = _view(a, now)
                if view.status != a.status:
                    approvals[i] = view
                    changed.append(view)
            if changed:
                self._save(approvals)
            return changed


__all__ = [
    "DEFAULT_ELICITED_LIFETIME_S",
    "DEFAULT_KEEP_CLOSED",
    "DEFAULT_RETENTION_S",
    "Approval",
    "ApprovalStore",
    "Reason",
    "Status",
]
