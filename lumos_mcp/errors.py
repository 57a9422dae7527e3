"""The exception tree. Every error carries fields and builds its message from them.

Each class has a stable ``code`` that tools return to the model (``to_dict``), so a caller
acts on the code and the fields, never on message text.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LumosError(Exception):
    """Base of every domain error lumos-mcp raises on purpose."""

    code: ClassVar[str] = "lumos_error"
    template: ClassVar[str] = "{detail}"

    def __init__(self, detail: str = "", **fields: Any) -> None:
        self.fields: dict[str, Any] = fields
        self.detail = detail
        try:
            message = self.template.format(detail=detail, **fields)
        except (KeyError, IndexError, ValueError):
            message = detail or self.code
        super().__init__(message.strip())

    def to_dict(self) -> dict[str, Any]:
        """The error as data: ``code``, ``message`` and every field."""
        return {"code": self.code, "message": str(self), **self.fields}


# --------------------------------------------------------------------------- knobs
class CatalogLoadError(LumosError):
    code = "catalog_invalid"
    template = "catalog {file}: field {field!r} breaks rule {rule!r}: {detail}"


class KnobError(LumosError):
    code = "knob_error"


class UnknownKnobError(KnobError):
    code = "unknown_knob"
    template = "unknown knob {knob!r}: knob ids come from the catalog (list_tunables) {detail}"


class KnobUnavailableError(KnobError):
    """The catalog knows the knob but the running kernel does not have it."""

    code = "not_on_this_kernel"
    template = "knob {knob!r} is not available on kernel {kernel}: {detail}"


class KnobLockedError(KnobError):
    """EPERM: lockdown (debugfs) or a file the kernel never lets anyone write."""

    code = "locked"
    template = "knob {knob!r} is locked by the kernel ({path}: EPERM) {detail}"


class PermissionDeniedError(KnobError):
    """EACCES: the server's user may not touch the file (live mode needs root)."""

    code = "permission_denied"
    template = "permission denied for knob {knob!r} ({path}) {detail}"


class InvalidValueError(KnobError):
    code = "invalid_value"
    template = "invalid value {value!r} for knob {knob!r}: {detail}"


class InvalidParameterError(KnobError):
    """A parametrised knob's parameter (device, cgroup) failed its pattern or does not exist."""

    code = "invalid_parameter"
    template = "invalid parameter {parameter!r} for knob {knob!r}: {detail}"


class PathEscapeError(KnobError):
    code = "path_escape"
    template = "path {path!r} escapes the kernel root {detail}"


class ReadbackMismatchError(KnobError):
    """The kernel holds something other than what was written (clamped or reformatted)."""

    code = "readback_mismatch"
    template = "knob {knob!r}: wrote {expected!r} but the kernel reads back {actual!r} {detail}"


class KernelIOError(KnobError):
    code = "kernel_io"
    template = "I/O error on {path}: errno {errno} {detail}"


class NoTasksMatchError(KnobError):
    """A task knob's selector picks no task (for the slice: no task of a fair policy)."""

    code = "no_tasks_match"
    template = "knob {knob!r}: selector {selector!r} matches no task {detail}"


class RtRuntimeTrapError(KnobError):
    """EPERM setting SCHED_RR/FIFO because RT group scheduling gives the task's cgroup no RT
    runtime (a new v1 cgroup has cpu.rt_runtime_us = 0): give the group and its parents a
    non-zero cpu.rt_runtime_us first, or keep the task in a group that has one."""

    code = "rt_runtime_zero"
    template = "knob {knob!r}: task {task} may not become real-time in cgroup {cgroup!r} (its RT runtime is 0) {detail}"


# --------------------------------------------------------------------------- policy
class PolicyError(LumosError):
    code = "policy_error"


class PolicyLoadError(PolicyError):
    code = "policy_invalid"
    template = "policy {file}: field {field!r} breaks rule {rule!r}: {detail}"


class PolicyFileMissingError(PolicyLoadError):
    """The policy file named does not exist (``rule`` is ``exists``)."""

    template = "policy file {file} does not exist: {detail}"


class PolicyDeniedError(PolicyError):
    """One or more policy rules deny a change. ``denials`` lists rule, knob, value, limit."""

    code = "policy_denied"
    template = "denied by policy: {detail}"


class GuardError(PolicyError):
    code = "guard_error"


class GuardLoosensError(GuardError):
    """A per-change guard would loosen the policy's guard on the same metric: refused at stage."""

    code = "guard_loosens"
    template = "a guard on {metric!r} would loosen the policy's ({policy_guard}): {detail}"


class GuardMetricMissingError(GuardError):
    """A guard's metric has no value in the signature now (no app metric reported, PSI absent,
    telemetry not sampling): refused at stage rather than watched as a silent pass."""

    code = "guard_metric_missing"
    template = "guard metric {metric!r} has no value here: {detail}"


class InvalidGuardError(GuardError):
    """A guard given at stage time that is not a guard (bad path, both or neither limit...)."""

    code = "invalid_guard"
    template = "guard {index}: {detail}"


# --------------------------------------------------------------------------- transactions
class TransactionError(LumosError):
    code = "transaction_error"


class UnknownTransactionError(TransactionError):
    code = "unknown_transaction"
    template = "no transaction {txid!r} {detail}"


class TransactionStateError(TransactionError):
    code = "invalid_state"
    template = "transaction {txid!r} is {state}, not {wanted} {detail}"


class ConflictError(TransactionError):
    code = "conflict"
    template = "knob {knob!r} is held by applied transaction {holder!r}: commit or revert it first {detail}"


class ExternalChangeError(TransactionError):
    """A knob's live value is not what this transaction wrote or saw: someone else changed it."""

    code = "external_change"
    template = "knob {knob!r} changed outside this transaction: expected {expected!r}, found {actual!r} {detail}"


class ApplyFailedError(TransactionError):
    """A write failed; everything already written was rolled back in reverse order."""

    code = "apply_failed"
    template = "apply of {txid!r} failed at knob {knob!r} and was rolled back: {detail}"


class JournalError(TransactionError):
    """The journal cannot be written or read: the server refuses new writes."""

    code = "journal_unavailable"
    template = "journal {path}: {detail}"


class StagedExpiredError(TransactionError):
    """A staged change this server no longer keeps (past the approval lifetime, or pushed out by newer ones)."""

    code = "staged_expired"
    template = "staged change {txid!r} expired ({reason}): stage it again {detail}"


class StateDirUnsafeError(LumosError):
    """The state directory, or something in it, could be changed by someone other than the server's user.

    ``path`` is the offending path and ``problem`` one of ``symlink``, ``not_owned``,
    ``group_or_world_writable``, ``not_a_directory``, ``not_a_regular_file``, ``hard_linked``,
    ``symlink_in_shared_directory`` or ``unusable`` (with the OS error in ``detail``).
    """

    code = "state_dir_unsafe"
    template = "unsafe state directory: {path} is refused ({problem}) {detail}"


class StateLockedError(TransactionError):
    code = "state_locked"
    template = "state directory {path} is in use by another lumos-mcp (pid {pid}) {detail}"


class WatchdogError(TransactionError):
    """The process that keeps a deadline past this server's death could not be started:
    nothing is applied without it."""

    code = "watchdog_unavailable"
    template = "cannot start the deadline watchdog for {tx!r}: {detail}"


# --------------------------------------------------------------------------- approvals and modes
class ApprovalError(LumosError):
    code = "approval_error"


class ApprovalRequiredError(ApprovalError):
    code = "approval_required"
    template = "transaction {txid!r} needs an approval bound to digest {digest}: call request_approval {detail}"


class ApprovalInvalidError(ApprovalError):
    code = "approval_invalid"
    template = "approval {approval_id!r} cannot be used: {reason} {detail}"


class CgroupError(LumosError):
    """A cgroup could not be created, joined, read or removed (no cpu controller, busy, gone)."""

    code = "cgroup_error"
    template = "cgroup {cgroup!r}: {detail}"


# --------------------------------------------------------------------------- arena
class ArenaError(LumosError):
    code = "arena_error"


class ToolMissingError(ArenaError):
    """A workload needs an external program that is not installed; ``install`` says how to get it."""

    code = "tool_missing"
    template = "{tool} is not installed (needed by {workload}); install it with: {install} {detail}"


class WorkloadError(ArenaError):
    """A workload failed to start, died, or produced output that cannot be read."""

    code = "workload_failed"
    template = "workload {workload}: {detail}"


class InvalidArgumentsError(LumosError):
    """A tool's arguments do not match its input schema (wrong type, out of range, missing).

    ``fields`` names the offending arguments (``"changes.vm.swappiness"``), never their values.
    """

    code = "invalid_arguments"
    template = "invalid arguments for {tool}: {detail}"


class UnknownToolError(LumosError):
    code = "unknown_tool"
    template = "no tool named {tool!r} {detail}"


class ModeError(LumosError):
    code = "mode_refused"
    template = "{mode} mode refuses this: {detail}"


class AuditError(LumosError):
    code = "audit_error"
    template = "audit log {path}: {detail}"


class AuditChainBrokenError(AuditError):
    """The audit log's hash chain does not verify (or does not match its anchor): what it says
    cannot be trusted, so replay refuses it unless told to show what it can."""

    code = "audit_chain_broken"


class ApprovalStoreError(ApprovalError):
    """The approval store cannot be read or written, or holds something unreadable."""

    code = "approval_store_unavailable"
    template = "approval store {path}: {detail}"


# --------------------------------------------------------------------------- telemetry
class TelemetryError(LumosError):
    code = "telemetry_error"


class TelemetryParseError(TelemetryError):
    """A kernel text (``source``: ``"proc/stat"``) does not have the expected shape."""

    code = "telemetry_parse"
    template = "cannot parse {source}: {detail}"


class TelemetryNotReadyError(TelemetryError):
    """The ring buffer does not yet hold enough samples: wait, or call fresh_signature."""

    code = "telemetry_not_ready"
    template = "telemetry has {samples} sample(s), needs {needed}: {detail}"


class InvalidTelemetryRequestError(TelemetryError):
    code = "invalid_telemetry_request"
    template = "invalid {parameter}={value!r}: {detail}"


class InvalidMetricError(TelemetryError):
    """An application metric with a bad name, unit or value (NaN, infinite, not a number)."""

    code = "invalid_metric"
    template = "invalid app metric {name!r}={value!r}: {detail}"


class UnknownMetricError(TelemetryError):
    """No app metric of this name was ever reported or scraped (``known``: the names that were)."""

    code = "unknown_metric"
    template = "no app metric {metric!r} was reported: {detail}"


class InvalidWindowError(TelemetryError):
    """A comparison window that cannot be measured (``window``: ``before``, ``after`` or ``txid``)."""

    code = "invalid_window"
    template = "invalid {window} window: {detail}"


class ScrapeError(TelemetryError):
    code = "scrape_failed"
    template = "scrape of {url} failed: {detail}"


class ScrapeRefusedError(ScrapeError):
    """Scrapes go to loopback only (127.0.0.0/8, ::1, localhost)."""

    code = "scrape_refused"
    template = "refusing to scrape {url}: {detail}"


__all__ = [
    "ApplyFailedError",
    "ApprovalError",
    "ApprovalInvalidError",
    "ApprovalRequiredError",
    "ApprovalStoreError",
    "ArenaError",
    "AuditChainBrokenError",
    "AuditError",
    "CatalogLoadError",
    "CgroupError",
    "ConflictError",
    "ExternalChangeError",
    "GuardError",
    "GuardLoosensError",
    "GuardMetricMissingError",
    "InvalidArgumentsError",
    "InvalidGuardError",
    "InvalidMetricError",
    "InvalidParameterError",
    "InvalidTelemetryRequestError",
    "InvalidWindowError",
    "InvalidValueError",
    "JournalError",
    "KernelIOError",
    "KnobError",
    "KnobLockedError",
    "KnobUnavailableError",
    "LumosError",
    "ModeError",
    "NoTasksMatchError",
    "PathEscapeError",
    "PermissionDeniedError",
    "PolicyDeniedError",
    "PolicyError",
    "PolicyFileMissingError",
    "PolicyLoadError",
    "ReadbackMismatchError",
    "RtRuntimeTrapError",
    "ScrapeError",
    "ScrapeRefusedError",
    "StagedExpiredError",
    "StateDirUnsafeError",
    "StateLockedError",
    "TelemetryError",
    "TelemetryNotReadyError",
    "TelemetryParseError",
    "ToolMissingError",
    "TransactionError",
    "TransactionStateError",
    "UnknownKnobError",
    "UnknownMetricError",
    "UnknownToolError",
    "UnknownTransactionError",
    "WorkloadError",
]


class SpeculatorStateError(LumosError):
    """The speculator is not in the state the call needs (already running, not running, no server loop)."""

    code = "speculator_state"
    template = "speculator: {detail}"
