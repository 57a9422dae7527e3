"""Guards: metric rules the server checks on every telemetry sample while a change is armed.

A guard names a numeric path of the full performance signature (``telemetry.signature``,
dotted: ``psi.cpu.some.avg10_pct``, ``app.p99_ms.last``, ``cgroups.batch.throttled_pct``), a
comparison the metric must keep (``<=``, ``<``, ``>=``, ``>``), a limit that is absolute
(``value``) or relative to a baseline captured just before apply (``ratio``, with an absolute
``slack`` so a baseline near zero still leaves room), and a hold rule (``hold_samples``
consecutive breaching samples spanning at least ``hold_s``) so noise alone does not trip it.

Everything here is pure: :class:`GuardWatch` is fed samples (time, values) and answers with a
:class:`Breach` or None; the service owns the clock, the telemetry and the revert.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

from lumos_mcp.errors import GuardLoosensError, LumosError
from lumos_mcp.telemetry.paths import IDENTITY_FIELDS
from lumos_mcp.telemetry.paths import lookup as lookup  # re-exported: the guards' metric lookup
from lumos_mcp.telemetry.signature import Signature

if TYPE_CHECKING:
    from lumos_mcp.telemetry.facade import PairValues, Telemetry
    from lumos_mcp.telemetry.readers import Snapshot

Op = Literal["<=", "<", ">=", ">"]
UPPER: frozenset[str] = frozenset({"<=", "<"})
"""Ops that put a ceiling on the metric (the others put a floor)."""


class Guard(BaseModel):
    """One guard: ``metric`` must stay ``op`` its limit; ``hold_samples`` breaching samples in a
    row (spanning at least ``hold_s``) revert the change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    """A dotted numeric path of the full signature, e.g. ``psi.cpu.some.avg10_pct``."""
    op: Op = "<="
    value: float | None = None
    """Absolute limit, in the metric's unit."""
    ratio: float | None = None
    """Relative limit: ``ratio`` x the baseline captured just before apply (plus ``slack``)."""
    slack: float = 0.0
    """Absolute leeway added to a relative limit in the lenient direction (a baseline of 0 still
    leaves this much room)."""
    hold_samples: int = 3
    """Consecutive breaching samples that trip it (1 = the first one)."""
    hold_s: float = 0.0
    """And at least this many seconds from the first to the last of them."""
    knobs: tuple[str, ...] = ()
    """Policy guards only: globs of the knob ids whose changes it watches; empty: every change."""

    @model_validator(mode="after")
    def _one_limit(self) -> Guard:
        if (self.value is None) == (self.ratio is None):
            raise ValueError("a guard has exactly one of 'value' (absolute) or 'ratio' (relative to a baseline)")
        if self.hold_samples < 1 or self.hold_s < 0 or self.slack < 0:
            raise ValueError("hold_samples >= 1, hold_s >= 0 and slack >= 0")
        if self.ratio is not None and not self.ratio > 0:
            raise ValueError("ratio must be > 0")
        return self

    @property
    def relative(self) -> bool:
        return self.ratio is not None

    @property
    def upper(self) -> bool:
        return self.op in UPPER

    def limit(self, baseline: float | None) -> float:
        """The limit in the metric's unit (a relative guard needs its baseline)."""
        if self.value is not None:
            return self.value
        assert self.ratio is not None and baseline is not None  # a relative guard is watched with its baseline
        return self.ratio * baseline + (self.slack if self.upper else -self.slack)

    def breached(self, value: float, limit: float) -> bool:
        """Whether ``value`` breaks the rule (the metric must stay ``op`` ``limit``)."""
        return {
            "<=": value > limit,
            "<": value >= limit,
            ">=": value < limit,
            ">": value <= limit,
        }[self.op]

    def applies_to(self, knobs: Sequence[str]) -> bool:
        return not self.knobs or any(fnmatchcase(k, g) for k in knobs for g in self.knobs)

    def text(self) -> str:
        if self.value is not None:
            rule = f"{self.metric} {self.op} {self.value:g}"
        else:
            sign = "+" if self.upper else "-"
            rule = f"{self.metric} {self.op} {self.ratio:g} x baseline" + (
                f" {sign} {self.slack:g}" if self.slack else ""
            )
        hold = f"{self.hold_samples} samples" + (f" over >= {self.hold_s:g} s" if self.hold_s else "")
        return f"{rule} (trips after {hold})"

    def as_data(self) -> dict[str, Any]:
        return {**self.model_dump(exclude_defaults=False, exclude={"knobs"}), "text": self.text()}


class GuardSettings(BaseModel):
    """The policy's ``[guards]`` section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[Guard, ...] = ()
    probation_s: float = 0.0
    """After a commit, keep evaluating the guards this long before the commit is recorded; a
    breach meanwhile reverts the change like an armed one. 0: the commit is final at once."""
    baseline_samples: int = 5
    """Samples before apply whose median is a relative guard's baseline."""

    def for_change(self, knobs: Sequence[str]) -> list[Guard]:
        return [g for g in self.rules if g.applies_to(knobs)]


# --------------------------------------------------------------------------- paths
def check_path(path: str) -> str | None:
    """Why ``path`` is not a numeric path of the full signature (None: it is)."""
    parts = path.split(".")
    if any(not p for p in parts):
        return "a dotted path with no empty part"
    model: Any = Signature
    i = 0
    while True:
        fields = model.model_fields
        if parts[i] not in fields:
            return f"{'.'.join(parts[: i + 1])!r} is not in the signature (known there: {sorted(fields)})"
        kind = _strip_optional(fields[parts[i]].annotation)
        i += 1
        rest = parts[i:]
        if get_origin(kind) is list:
            (item,) = get_args(kind)
            if len(rest) < 2 or rest[-1] not in item.model_fields:
                fields_text = sorted(item.model_fields)
                return f"{path!r}: a list needs an item ({'/'.join(IDENTITY_FIELDS)}) and one of {fields_text}"
            kind = _strip_optional(item.model_fields[rest[-1]].annotation)
            return None if kind in (int, float) else f"{path!r} is not numeric"
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if not rest:
                return f"{path!r} names a section: add one of {sorted(kind.model_fields)}"
            model = kind
            continue
        if rest:
            return f"{'.'.join(parts[:i])!r} is a number: nothing is below it"
        return None if kind in (int, float) else f"{path!r} is not numeric"


def _strip_optional(annotation: Any) -> Any:
    args = get_args(annotation)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


# --------------------------------------------------------------------------- tightening
_INHERITED = ("slack", "hold_samples", "hold_s")


def merge(policy: Sequence[Guard], change: Sequence[Guard]) -> list[Guard]:
    """The guards a change is watched by: the policy's, with each one a per-change guard of the
    same metric and direction replaces, plus the per-change guards that stand alone.

    A per-change guard that replaces a policy guard must be at least as strict: the same kind
    of limit (absolute or relative), a limit no further out, a slack and a hold no longer. What
    it leaves unset of ``slack``, ``hold_samples`` and ``hold_s`` it takes from the policy's.

    Raises:
        GuardLoosensError: a per-change guard would loosen a policy guard.
    """
    out = list(policy)
    for i, mine in enumerate(change):
        for theirs in policy:
            if theirs.metric != mine.metric or theirs.upper != mine.upper:
                continue
            inherited = {k: getattr(theirs, k) for k in _INHERITED if k not in mine.model_fields_set}
            mine = mine.model_copy(update=inherited)
            looser = _looser(theirs, mine)
            if looser is not None:
                raise GuardLoosensError(
                    f"{looser[0]}: {looser[1]}",
                    metric=mine.metric,
                    guard=i,
                    policy_guard=theirs.text(),
                    field=looser[0],
                )
            if theirs in out:
                out.remove(theirs)
        out.append(mine)
    return out


def _looser(theirs: Guard, mine: Guard) -> tuple[str, str] | None:
    """Which field of ``mine`` is looser than ``theirs``, and how (None: at least as strict)."""
    if theirs.relative != mine.relative:
        return "kind", "the policy's limit is " + ("relative" if theirs.relative else "absolute")
    a, b = (theirs.ratio, mine.ratio) if theirs.relative else (theirs.value, mine.value)
    assert a is not None and b is not None
    if (b > a) if theirs.upper else (b < a):
        return "limit", f"{b:g} is beyond the policy's {a:g}"
    if b == a and theirs.op in ("<", ">") and mine.op in ("<=", ">="):
        return "op", f"{mine.op} admits the policy's limit, {theirs.op} does not"
    if mine.slack > theirs.slack:
        return "slack", f"{mine.slack:g} is more than the policy's {theirs.slack:g}"
    if mine.hold_samples > theirs.hold_samples:
        return "hold_samples", f"{mine.hold_samples} is more than the policy's {theirs.hold_samples}"
    if mine.hold_s > theirs.hold_s:
        return "hold_s", f"{mine.hold_s:g} is more than the policy's {theirs.hold_s:g}"
    return None


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Sample:
    """One telemetry sample as the guards see it: its time and the numbers at the watched paths
    (None: the path had no value in this sample)."""

    t: float
    values: Mapping[str, float | None]


@dataclass(frozen=True)
class Breach:
    """Why a guard tripped: the evidence an audit record and the agent's next call carry."""

    guard: Guard
    baseline: float | None
    limit: float
    samples: tuple[tuple[float, float], ...]
    """(time, value) of the breaching samples in a row, oldest first."""

    @property
    def first_breach_t(self) -> float:
        return self.samples[0][0]

    def as_data(self) -> dict[str, Any]:
        return {
            "guard": self.guard.as_data(),
            "baseline": self.baseline,
            "limit": self.limit,
            "samples": [{"t": round(t, 3), "value": v} for t, v in self.samples],
            "first_breach_t": round(self.first_breach_t, 3),
        }


def baseline(values: Sequence[float | None]) -> float | None:
    """The median of the numbers among ``values`` (None: none)."""
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


@dataclass
class GuardWatch:
    """The guards of one armed change and their running streaks. Feed it samples in time order."""

    guards: Sequence[Guard]
    baselines: Mapping[str, float | None]
    """metric -> baseline (relative guards need theirs)."""
    since: float
    """Samples at or before this time (apply) are ignored."""
    _streaks: list[list[tuple[float, float]]] = field(default_factory=list)
    last_t: float = -math.inf
    samples_seen: int = 0

    def __post_init__(self) -> None:
        self._streaks = [[] for _ in self.guards]
        self.last_t = max(self.last_t, self.since)

    def limits(self) -> list[float]:
        return [g.limit(self.baselines.get(g.metric)) for g in self.guards]

    def observe(self, sample: Sample) -> Breach | None:
        """Take one sample; the first guard whose hold is met trips (None: none did)."""
        if sample.t <= self.last_t:
            return None
        self.last_t = sample.t
        self.samples_seen += 1
        for guard, streak in zip(self.guards, self._streaks, strict=True):
            value = sample.values.get(guard.metric)
            limit = guard.limit(self.baselines.get(guard.metric))
            if value is None:
                # a missing sample proves nothing either way: it neither breaks the hold nor adds to
                # it (a harm that starves the metric's reporter makes gaps; they must not blind the guard)
                continue
            if not guard.breached(value, limit):
                streak.clear()  # a calm sample: the hold starts over
                continue
            streak.append((sample.t, value))
            del streak[: max(0, len(streak) - max(guard.hold_samples, 64))]
            if len(streak) >= guard.hold_samples and streak[-1][0] - streak[0][0] >= guard.hold_s - 1e-9:
                return Breach(guard, self.baselines.get(guard.metric), limit, tuple(streak))
        return None


# --------------------------------------------------------------------------- the live source
class MetricSource(Protocol):
    """Where the service reads guard samples: each is (time, values) with the values' window one
    sampler interval, oldest first; values are whatever :func:`lookup` reads (a signature, its
    data as dicts, or a :class:`~lumos_mcp.telemetry.paths.PathValues`)."""

    def samples_after(self, t: float, limit: int = 64) -> list[tuple[float, Any]]:
        """The samples taken after ``t`` (at most the newest ``limit``)."""
        ...

    def recent(self, n: int) -> list[tuple[float, Any]]:
        """The newest ``n`` samples (fewer when the buffer holds fewer)."""
        ...

    def unavailable(self) -> Mapping[str, str]:
        """Metric or source -> why it is missing here (as the signature says)."""
        ...


_CACHE = 128


class TelemetrySource:
    """Guard samples from the running sampler: one :class:`PairValues` per sampler interval (the
    window between two consecutive snapshots), made once per snapshot and computing only the
    paths the guards read (see ``Telemetry.pair_values``)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._cache: dict[float, PairValues] = {}

    def _pairs(self, snaps: Sequence[Snapshot]) -> list[tuple[float, PairValues]]:
        """One view per consecutive pair of ``snaps`` (oldest first), with the later one's wall time
        (cached by its clock time: a sample's values are read once, however many checks see it)."""
        out = []
        for a, b in itertools.pairwise(snaps):
            view = self._cache.get(b.t)
            if view is None or view.a.t != a.t:
                view = self._cache[b.t] = self.telemetry.pair_values(a, b)
            out.append((b.wall, view))
        while len(self._cache) > _CACHE:
            del self._cache[next(iter(self._cache))]  # the oldest snapshot's
        return out

    def samples_after(self, t: float, limit: int = 64) -> list[tuple[float, Any]]:
        latest = self.telemetry.sampler.latest()
        if latest is None or latest.wall <= t:
            return []  # the common case between samples: nothing read, nothing computed
        return [p for p in self._pairs(self.telemetry.sampler.newest(limit + 1, after_wall=t)) if p[0] > t]

    def recent(self, n: int) -> list[tuple[float, Any]]:
        return self._pairs(self.telemetry.sampler.newest(n + 1))

    def unavailable(self) -> Mapping[str, str]:
        snaps = self.telemetry.sampler.newest(2)
        if len(snaps) == 2:
            try:
                return dict(self.telemetry.signature_between(snaps[0].wall, snaps[1].wall).unavailable)
            except LumosError:
                pass  # evicted meanwhile
        return {"telemetry": "fewer than two samples taken yet"}
