"""The policy as data: frozen pydantic models of a policy file, its digest and its summary.

A ``Policy`` is built by :func:`lumos_mcp.policy.loader.parse_policy` (or ``load_policy``),
which checks it against the schema and the knob catalog; the engine reads it and never
changes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from lumos_mcp.guards import GuardSettings
from lumos_mcp.knobs import Kind

Approval = Literal["always", "never", "above_step"]
CrossOp = Literal["less_than", "less_equal", "greater_than", "greater_equal", "equal", "not_equal"]
GLOB_CHARS = frozenset("*?[")

CROSS_SYMBOLS: dict[str, str] = {
    "less_than": "<",
    "less_equal": "<=",
    "greater_than": ">",
    "greater_equal": ">=",
    "equal": "==",
    "not_equal": "!=",
}


def is_glob(key: str) -> bool:
    """Whether a policy knob key is a glob (``cgroup.*.cpu_weight``) rather than one knob."""
    return any(c in GLOB_CHARS for c in key)


def specificity(key: str) -> tuple[int, str]:
    """Sort key among globs: the one with the most literal characters first, then by name."""
    return (-sum(1 for c in key if c not in "*?[]!"), key)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class GlobalRules(_Frozen):
    """Rules for every change: deadlines, approval lifetime, rate of commits."""

    confirm_within_s: float = 120.0
    """Default auto-revert deadline of an applied change, in seconds."""
    max_confirm_within_s: float = 3600.0
    """Longest deadline a caller may ask for, in seconds."""
    approval_lifetime_s: float = 600.0
    """How long a granted approval stays usable, in seconds."""
    commits_per_hour: int = 20
    """Most changes applied in any 3600 s window."""


class Bounds(_Frozen):
    """Value bounds shared by a knob rule and a speculation envelope entry.

    Which fields apply depends on the knob's kind: ``min``/``max``/``max_step_ratio`` for int
    knobs, ``allow`` for choice, bool and cpulist knobs, ``allow_unlimited``/``min_quota_ratio``
    for cpu_max knobs. The loader rejects a field that does not fit the kind.
    """

    min: int | None = None
    max: int | None = None
    max_step_ratio: float | None = None
    """Largest ``|after - before| / max(|before|, 1)`` per change; None: no limit."""
    allow: tuple[str | bool, ...] | None = None
    """Allowed values; None: every value the catalog allows."""
    allow_unlimited: bool = False
    """cpu_max: whether ``max PERIOD`` (no limit) may be set."""
    min_quota_ratio: float | None = None
    """cpu_max: smallest quota / period, e.g. 0.1 for a tenth of one CPU."""
    cooldown_s: float = 0.0
    """Seconds since this knob's last applied change before it may change again."""


class KnobRule(Bounds):
    """What the policy allows for one knob, or for every knob a glob matches."""

    approval: Approval = "always"
    """always / never / above_step (needs ``approval_above_step_ratio``). Absent: always."""
    approval_above_step_ratio: float | None = None


class EnvelopeRule(Bounds):
    """The band a speculator may move a knob in without approval."""

    confirm_within_s: float | None = None
    """Auto-revert deadline of a speculative move; None: the speculation section's default."""


class CrossRule(_Frozen):
    """A relation between two knobs' values, as data (never ``eval``): ``left <op> right``."""

    rule: CrossOp
    left: str
    right: str
    description: str = ""

    def text(self) -> str:
        return f"{self.left} {CROSS_SYMBOLS[self.rule]} {self.right}"


class Speculation(_Frozen):
    """The envelope the speculator may move in: auto-reverting moves, no approval."""

    confirm_within_s: float = 10.0
    knobs: dict[str, EnvelopeRule] = Field(default_factory=dict)


class Policy(_Frozen):
    """A loaded, catalog-checked policy. Default-deny: a knob not in ``knobs`` may not change."""

    name: str
    description: str = ""
    global_: GlobalRules = Field(default_factory=GlobalRules, alias="global")
    knobs: dict[str, KnobRule] = Field(default_factory=dict)
    cross: tuple[CrossRule, ...] = ()
    speculation: Speculation = Field(default_factory=Speculation)
    guards: GuardSettings = Field(default_factory=GuardSettings)
    """Metric rules the server checks on every sample while a change is armed (``lumos_mcp.guards``)."""

    # The catalog kind of every knob key and envelope key, filled in by the loader. It is
    # derived from the catalog, so it stays out of the dump and the digest.
    _kinds: dict[str, Kind] = PrivateAttr(default_factory=dict)

    def kind_of(self, key: str) -> Kind | None:
        """The catalog kind of a knob or envelope key, when the loader resolved it."""
        return self._kinds.get(key)

    def canonical_json(self) -> str:
        """The policy as canonical JSON: sorted keys, no whitespace, defaults filled in."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of :meth:`canonical_json`: two policies with equal rules share it."""
        return "sha256:" + hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        """What may change, within which bounds, and when a human must approve (for an MCP resource)."""
        knobs: dict[str, Any] = {}
        for key, rule in sorted(self.knobs.items()):
            knobs[key] = {"kind": self.kind_of(key), **_bounds_summary(rule), "approval": _approval_text(rule)}
        envelope: dict[str, Any] = {}
        for key, env in sorted(self.speculation.knobs.items()):
            confirm = env.confirm_within_s if env.confirm_within_s is not None else self.speculation.confirm_within_s
            envelope[key] = {"kind": self.kind_of(key), **_bounds_summary(env), "confirm_within_s": confirm}
        return {
            "name": self.name,
            "description": self.description,
            "digest": self.digest,
            "default": "deny: a knob not listed under 'knobs' may not change",
            "global": self.global_.model_dump(),
            "knobs": knobs,
            "cross": [{"rule": c.rule, "text": c.text(), "description": c.description} for c in self.cross],
            "speculation": {
                "note": "speculative moves stay inside this envelope, need no approval and auto-revert",
                "confirm_within_s": self.speculation.confirm_within_s,
                "knobs": envelope,
            },
            "guards": self.guards_summary(),
        }

    def guards_summary(self) -> dict[str, Any]:
        """The policy's guards as data: each rule and its text, the probation and the baseline."""
        return {
            "note": "every change (speculative moves too) is watched by the rules whose 'knobs' match it; "
            "a breach held for its hold reverts it at once; per-change guards may only tighten these",
            "probation_s": self.guards.probation_s,
            "baseline_samples": self.guards.baseline_samples,
            "rules": [{**g.as_data(), "knobs": list(g.knobs)} for g in self.guards.rules],
        }


def _bounds_summary(rule: Bounds) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("min", "max", "max_step_ratio", "min_quota_ratio"):
        value = getattr(rule, name)
        if value is not None:
            out[name] = value
    if rule.allow is not None:
        out["allow"] = list(rule.allow)
    if rule.allow_unlimited:
        out["allow_unlimited"] = True
    if rule.cooldown_s:
        out["cooldown_s"] = rule.cooldown_s
    return out


def _approval_text(rule: KnobRule) -> str:
    if rule.approval == "above_step":
        return (
            f"required when the step ratio exceeds {rule.approval_above_step_ratio} (or the current value is unknown)"
        )
    return "required for every change" if rule.approval == "always" else "not required"
