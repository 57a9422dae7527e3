"""The pure policy engine: given a policy, proposed changes, current values and a history,
say whether the change set is allowed, why not, and whether a human must approve it.

Pure: no files, no clock, no kernel. The caller passes ``now``, the current values of the
knobs cross rules need (:func:`referenced_knobs`) and a :class:`History`. The engine checks
every rule and returns every denial, not only the first, so one answer tells the agent
everything it must fix.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol, TypeVar

from lumos_mcp.errors import PolicyDeniedError
from lumos_mcp.policy.model import (
    CROSS_SYMBOLS,
    Bounds,
    CrossRule,
    EnvelopeRule,
    KnobRule,
    Policy,
    is_glob,
    specificity,
)

Value = int | bool | str
HOUR_S = 3600.0

RULES = (
    "not_allowed",
    "below_min",
    "above_max",
    "not_in_allow",
    "step_too_large",
    "cooldown",
    "commits_per_hour",
    "cross_field",
    "confirm_too_long",
    "duplicate_knob",
    "empty_change",
    "outside_envelope",
)


@dataclass(frozen=True)
class Change:
    """One proposed knob change. ``before`` is None when the current value is unknown.

    ``files`` are the kernel files the knob writes on this host (``Resolved.files``). Two
    knob ids can be aliases of one file (cgroup v1 ``cpu_weight`` and ``cpu_shares`` both
    write ``cpu.shares``), so cooldowns are keyed by file when ``files`` is given, and two
    changes of one change set that share a file are refused: rules follow the file, not the
    alias. Empty: the knob id is the key.
    """

    knob: str
    kind: str
    before: Value | None
    after: Value
    files: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """What the history knows this change by: its files, else its knob id."""
        return self.files or (self.knob,)


@dataclass(frozen=True)
class Denial:
    """One broken rule: which rule, for which knob, the offending value and the limit it broke."""

    rule: str
    knob: str | None
    """None for rules about the whole change set (empty_change, commits_per_hour, confirm_too_long)."""
    value: object
    limit: object
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for a change set."""

    allowed: bool
    denials: tuple[Denial, ...]
    approval_required: bool
    approval_reasons: tuple[str, ...]
    confirm_within_s: float
    """The auto-revert deadline to arm, in seconds (asked for, or the policy's default)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class History(Protocol):
    """What the engine needs to know about the past (the journal or audit log answers)."""

    def last_change_at(self, key: str) -> float | None:
        """When ``key`` (a kernel file, or a knob id: see :attr:`Change.keys`) last had a change
        applied, whichever knob id wrote it (same clock as ``now``), or None."""
        ...

    def commits_since(self, ts: float) -> int:
        """How many changes were applied or committed at or after ``ts`` (one applied and then
        committed counts once): each apply takes a slot of ``commits_per_hour``."""
        ...


class CommitHistory(Protocol):
    """What :func:`evaluate_commit` needs: the commits already made."""

    def committed_since(self, ts: float) -> int:
        """How many changes were committed at or after ``ts``."""
        ...


R = TypeVar("R", bound=Bounds)


def match_rule(policy: Policy, rules: Mapping[str, R], knob: str, kind: str) -> tuple[str, R] | None:
    """The entry of ``rules`` (knob rules or envelope) that governs ``knob``.

    An exact key beats a glob; among globs the most specific (most literal characters) wins.
    A key whose catalog kind differs from ``kind`` never matches.
    """
    keys = [knob] if knob in rules else []
    keys += sorted((k for k in rules if is_glob(k) and fnmatchcase(knob, k)), key=specificity)
    for key in keys:
        resolved = policy.kind_of(key)
        if resolved is None or resolved == kind:
            return key, rules[key]
    return None


def referenced_knobs(policy: Policy, changes: Sequence[Change]) -> set[str]:
    """The other knobs whose current values the cross rules touching ``changes`` need.

    Pass their values in ``current`` to :func:`evaluate`; a value left out denies (fail closed).
    """
    changed = {c.knob for c in changes}
    needed: set[str] = set()
    for rule in policy.cross:
        if rule.left in changed or rule.right in changed:
            needed.update(k for k in (rule.left, rule.right) if k not in changed)
    return needed


def evaluate(
    policy: Policy,
    changes: Sequence[Change],
    *,
    current: Mapping[str, Value],
    history: History,
    now: float,
    confirm_within_s: float | None = None,
    speculative: bool = False,
) -> Verdict:
    """Check a change set against every rule of ``policy`` and return all denials.

    Args:
        policy: the loaded policy.
        changes: the proposed changes (normalised values, concrete knob ids).
        current: current values of other knobs, at least :func:`referenced_knobs`.
        history: past applied changes, for cooldowns and the hourly commit limit.
        now: the current time, on the clock ``history`` uses, in seconds.
        confirm_within_s: the auto-revert deadline asked for; None takes the default.
        speculative: a speculator's move: it must stay inside the speculation envelope (and
            the knob rules' bounds), needs no approval, skips the hourly commit limit and gets
            the envelope's deadline.

    Returns:
        The verdict; ``allowed`` is true exactly when ``denials`` is empty.

    Raises:
        Nothing of its own: a malformed change, value or deadline is a denial, never an
        exception. Errors raised by ``history`` propagate.
    """
    ev = _Evaluation(policy, history, now)
    if not changes:
        ev.deny("empty_change", None, 0, 1, "the change set is empty: propose at least one knob change")
    for knob, count in sorted(Counter(c.knob for c in changes).items()):
        if count > 1:
            ev.deny(
                "duplicate_knob",
                knob,
                count,
                1,
                f"{knob} appears {count} times in one change set; each knob may change at most once",
            )
    ev.check_shared_files(changes)
    for change in changes:
        if speculative:
            ev.check_speculative(change)
        else:
            ev.check_change(change)
    ev.check_cross(changes, current)
    if not speculative:
        ev.check_commits()
    deadline = ev.check_confirm(confirm_within_s, speculative)
    return Verdict(
        allowed=not ev.denials,
        denials=tuple(ev.denials),
        approval_required=bool(ev.reasons),
        approval_reasons=tuple(ev.reasons),
        confirm_within_s=deadline,
    )


def evaluate_commit(policy: Policy, *, history: CommitHistory, now: float) -> Verdict:
    """Check that committing one more change keeps within ``commits_per_hour``.

    Applying takes a slot already (:func:`evaluate`); this holds the limit at commit too, so
    changes applied over more than an hour cannot all be kept in one.

    Returns:
        The verdict; a ``commits_per_hour`` denial names the limit and the count it would reach.
    """
    limit = policy.global_.commits_per_hour
    count = history.committed_since(now - HOUR_S) + 1
    denials: tuple[Denial, ...] = ()
    if count > limit:
        denials = (
            Denial(
                rule="commits_per_hour",
                knob=None,
                value=count,
                limit=limit,
                message=f"this would be commit {count} in the last hour; policy {policy.name!r} allows {limit} "
                "per hour (the change stays armed and reverts at its deadline unless committed later)",
            ),
        )
    return Verdict(
        allowed=not denials,
        denials=denials,
        approval_required=False,
        approval_reasons=(),
        confirm_within_s=0.0,
    )


def raise_if_denied(verdict: Verdict) -> None:
    """Raise when the verdict denies.

    Raises:
        PolicyDeniedError: ``verdict.allowed`` is false; ``denials`` lists every denial as a
            dict with rule, knob, value, limit and message.
    """
    if not verdict.allowed:
        raise PolicyDeniedError(
            "; ".join(d.message for d in verdict.denials), denials=[d.to_dict() for d in verdict.denials]
        )


# --------------------------------------------------------------------------- internals
def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _step_ratio(before: int, after: int) -> float:
    return abs(after - before) / max(abs(before), 1)


def _parse_cpu_max(value: object) -> tuple[int | None, int] | None:
    """``"max 100000"`` -> ``(None, 100000)``, ``"50000 100000"`` -> ``(50000, 100000)``; else None."""
    if not isinstance(value, str):
        return None
    words = value.split()
    if len(words) != 2 or not words[1].isdigit() or int(words[1]) <= 0:
        return None
    if words[0] == "max":
        return None, int(words[1])
    if not words[0].isdigit():
        return None
    return int(words[0]), int(words[1])


class _Evaluation:
    def __init__(self, policy: Policy, history: History, now: float) -> None:
        self.policy = policy
        self.history = history
        self.now = now
        self.denials: list[Denial] = []
        self.reasons: list[str] = []
        self.envelope_confirms: list[float] = []

    def deny(self, rule: str, knob: str | None, value: object, limit: object, message: str) -> None:
        self.denials.append(Denial(rule=rule, knob=knob, value=value, limit=limit, message=message))

    # ------------------------------------------------------------------ per change
    def check_change(self, change: Change) -> None:
        matched = match_rule(self.policy, self.policy.knobs, change.knob, change.kind)
        if matched is None:
            self.not_listed(change)
            return
        key, rule = matched
        self.check_value(change, rule, f"knob rule {key!r}", step=True)
        self.check_cooldown(change, rule.cooldown_s)
        self.check_approval(change, rule)

    def check_speculative(self, change: Change) -> None:
        envelope = match_rule(self.policy, self.policy.speculation.knobs, change.knob, change.kind)
        if envelope is None:
            self.deny(
                "outside_envelope",
                change.knob,
                change.after,
                f"speculation envelope of policy {self.policy.name!r}",
                f"{change.knob} is not in the speculation envelope of policy {self.policy.name!r}: "
                "a speculative move may only touch knobs listed under [speculation.knobs]",
            )
        else:
            key, env = envelope
            self.check_value(change, env, f"speculation envelope {key!r}", step=True)
            self.check_cooldown(change, env.cooldown_s)
            self.envelope_confirms.append(self._envelope_confirm(env))
        # The speculator never gets more than the agent: the knob rule's bounds hold too.
        matched = match_rule(self.policy, self.policy.knobs, change.knob, change.kind)
        if matched is None:
            self.not_listed(change)
        else:
            key, rule = matched
            self.check_value(change, rule, f"knob rule {key!r}", step=False)

    def _envelope_confirm(self, env: EnvelopeRule) -> float:
        return env.confirm_within_s if env.confirm_within_s is not None else self.policy.speculation.confirm_within_s

    def not_listed(self, change: Change) -> None:
        self.deny(
            "not_allowed",
            change.knob,
            change.after,
            f"not listed in policy {self.policy.name!r}",
            f"{change.knob} may not change to {_show(change.after)}: policy {self.policy.name!r} does not list it "
            "(default-deny: only listed knobs may change)",
        )

    def check_value(self, change: Change, rule: Bounds, source: str, *, step: bool) -> None:
        knob, after = change.knob, change.after
        if change.kind == "int":
            if not _is_int(after):
                self.deny("not_allowed", knob, after, "an integer", f"{knob} is an int knob; {_show(after)} is not one")
                return
            assert isinstance(after, int)
            if rule.min is not None and after < rule.min:
                self.deny(
                    "below_min", knob, after, rule.min, f"{knob} = {after} is below the minimum {rule.min} ({source})"
                )
            if rule.max is not None and after > rule.max:
                self.deny(
                    "above_max", knob, after, rule.max, f"{knob} = {after} is above the maximum {rule.max} ({source})"
                )
            if step and rule.max_step_ratio is not None and _is_int(change.before):
                assert isinstance(change.before, int)
                ratio = _step_ratio(change.before, after)
                if ratio > rule.max_step_ratio:
                    self.deny(
                        "step_too_large",
                        knob,
                        after,
                        rule.max_step_ratio,
                        f"{knob}: the step from {change.before} to {after} is a ratio of {ratio:.3g} of the current "
                        f"value, above the largest step ratio {rule.max_step_ratio} ({source}); move in smaller steps",
                    )
        elif change.kind in ("bool", "choice", "cpulist"):
            wants_bool = change.kind == "bool"
            if isinstance(after, bool) != wants_bool or not isinstance(after, bool | str):
                expected = "true or false" if wants_bool else "a string"
                self.deny("not_allowed", knob, after, expected, f"{knob} is a {change.kind} knob; expected {expected}")
            elif rule.allow is not None and after not in rule.allow:
                allowed = ", ".join(_show(v) for v in rule.allow)
                self.deny(
                    "not_in_allow",
                    knob,
                    after,
                    list(rule.allow),
                    f"{knob} = {_show(after)} is not among the allowed values [{allowed}] ({source})",
                )
        elif change.kind == "cpu_max":
            self.check_cpu_max(change, rule, source)
        else:
            self.deny("not_allowed", knob, after, "a catalog kind", f"{knob} has unknown kind {change.kind!r}")

    def check_cpu_max(self, change: Change, rule: Bounds, source: str) -> None:
        knob, after = change.knob, change.after
        parsed = _parse_cpu_max(after)
        if parsed is None:
            self.deny(
                "not_in_allow",
                knob,
                after,
                "'QUOTA PERIOD' or 'max PERIOD'",
                f"{knob} = {_show(after)} is not a CPU limit of the form 'QUOTA PERIOD' or 'max PERIOD' (microseconds)",
            )
            return
        quota, period = parsed
        if quota is None:
            if not rule.allow_unlimited:
                self.deny(
                    "not_in_allow",
                    knob,
                    after,
                    "allow_unlimited = false",
                    f"{knob} = {_show(after)} removes the CPU limit, which {source} does not allow "
                    "(allow_unlimited = false)",
                )
        elif rule.min_quota_ratio is not None and quota / period < rule.min_quota_ratio:
            self.deny(
                "below_min",
                knob,
                after,
                rule.min_quota_ratio,
                f"{knob} = {_show(after)} grants {quota / period:.3g} CPU, below the minimum quota ratio "
                f"{rule.min_quota_ratio} ({source})",
            )

    def check_cooldown(self, change: Change, cooldown_s: float) -> None:
        if cooldown_s <= 0:
            return
        # Whichever knob id wrote the file last: an alias must not reset the clock.
        found = [t for t in (self.history.last_change_at(k) for k in change.keys) if t is not None]
        if not found:
            return
        elapsed = self.now - max(found)
        if elapsed < cooldown_s:
            what = change.knob if not change.files else f"{change.knob} ({', '.join(change.files)})"
            self.deny(
                "cooldown",
                change.knob,
                round(elapsed, 3),
                cooldown_s,
                f"{what} last changed {elapsed:.1f} s ago; the cooldown is {cooldown_s:g} s "
                f"(try again in {cooldown_s - elapsed:.1f} s)",
            )

    def check_approval(self, change: Change, rule: KnobRule) -> None:
        if rule.approval == "always":
            self.reasons.append(f"{change.knob}: the policy requires approval for every change")
        elif rule.approval == "above_step":
            threshold = rule.approval_above_step_ratio or 0.0
            if not (_is_int(change.before) and _is_int(change.after)):
                self.reasons.append(f"{change.knob}: the current value is unknown, so the step cannot be sized")
                return
            assert isinstance(change.before, int) and isinstance(change.after, int)
            ratio = _step_ratio(change.before, change.after)
            if ratio > threshold:
                self.reasons.append(
                    f"{change.knob}: step ratio {ratio:.3g} ({change.before} -> {change.after}) is above {threshold:g}"
                )

    # ------------------------------------------------------------------ per change set
    def check_shared_files(self, changes: Sequence[Change]) -> None:
        """Two knob ids of one change set that write the same file (aliases) are refused:
        the last write would win and the first's rules would judge a value never kept."""
        writers: dict[str, list[str]] = {}
        for change in changes:
            for file in change.files:
                writers.setdefault(file, [])
                if change.knob not in writers[file]:
                    writers[file].append(change.knob)
        for file, knobs in sorted(writers.items()):
            if len(knobs) > 1:
                self.deny(
                    "duplicate_knob",
                    knobs[-1],
                    len(knobs),
                    1,
                    f"{' and '.join(knobs)} write the same file {file}; change it through one of them only",
                )

    def check_cross(self, changes: Sequence[Change], current: Mapping[str, Value]) -> None:
        changed = {c.knob: c.after for c in changes}
        values: dict[str, object] = {**current, **changed}
        for rule in self.policy.cross:
            if rule.left in changed or rule.right in changed:
                self.check_cross_rule(rule, values, changed)

    def check_cross_rule(self, rule: CrossRule, values: Mapping[str, object], changed: Mapping[str, object]) -> None:
        text = rule.text()
        left, right = values.get(rule.left), values.get(rule.right)
        for knob, value in ((rule.left, left), (rule.right, right)):
            if not _is_int(value):
                state = "unknown" if value is None else f"not an integer ({_show(value)})"
                self.deny(
                    "cross_field",
                    knob,
                    value,
                    text,
                    f"cross rule '{text}' cannot be checked: the value of {knob} is {state}, so the change is "
                    "denied (fail closed); pass its current value",
                )
        if not (_is_int(left) and _is_int(right)):
            return
        assert isinstance(left, int) and isinstance(right, int)
        holds = {
            "less_than": left < right,
            "less_equal": left <= right,
            "greater_than": left > right,
            "greater_equal": left >= right,
            "equal": left == right,
            "not_equal": left != right,
        }[rule.rule]
        if holds:
            return
        knob, other = (rule.left, rule.right) if rule.left in changed else (rule.right, rule.left)
        value, limit = values[knob], values[other]
        self.deny(
            "cross_field",
            knob,
            value,
            limit,
            f"{knob} = {value} breaks cross rule '{text}' ({rule.left} = {left} {CROSS_SYMBOLS[rule.rule]} "
            f"{rule.right} = {right} is false); {other} is {limit}",
        )

    def check_commits(self) -> None:
        limit = self.policy.global_.commits_per_hour
        count = self.history.commits_since(self.now - HOUR_S) + 1
        if count > limit:
            self.deny(
                "commits_per_hour",
                None,
                count,
                limit,
                f"this would be commit {count} in the last hour; policy {self.policy.name!r} allows {limit} per hour",
            )

    def check_confirm(self, asked: float | None, speculative: bool) -> float:
        g = self.policy.global_
        if speculative:
            limit = min(self.envelope_confirms, default=self.policy.speculation.confirm_within_s)
            default, source = limit, "the speculation envelope's deadline"
        else:
            limit, default, source = g.max_confirm_within_s, g.confirm_within_s, "max_confirm_within_s"
        if asked is None:
            return default
        number = float(asked) if isinstance(asked, int | float) and not isinstance(asked, bool) else math.nan
        if not (math.isfinite(number) and 0 < number <= limit):
            self.deny(
                "confirm_too_long",
                None,
                asked,
                limit,
                f"confirm_within_s = {asked} s is not allowed: it must be a positive number of seconds "
                f"no greater than {limit:g} ({source})",
            )
        return number
