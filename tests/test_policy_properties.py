"""Property tests: for random policies and random changes the engine never raises, denies
every value outside its bounds, explains every denial, and allows only what every rule allows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lumos_mcp.errors import PolicyLoadError
from lumos_mcp.knobs import default_catalog
from lumos_mcp.policy import RULES, Change, Policy, evaluate, match_rule, parse_policy
from lumos_mcp.policy.engine import Value

CATALOG = default_catalog()
INT_SPECS = {s.id: s for s in CATALOG if s.kind == "int" and s.param is None}
GLOB_KEYS = {"cgroup.*.cpu_weight": CATALOG.spec("cgroup.{name}.cpu_weight")}
SET_WIDE = {"empty_change", "commits_per_hour", "confirm_too_long"}
NOW = 1_000_000.0


@dataclass(frozen=True)
class History:
    last: dict[str, float]
    commits: tuple[float, ...]

    def last_change_at(self, knob: str) -> float | None:
        return self.last.get(knob)

    def commits_since(self, ts: float) -> int:
        return sum(1 for t in self.commits if t >= ts)


@st.composite
def knob_rules(draw: st.DrawFn, hard_min: int, hard_max: int) -> dict[str, Any]:
    lo = draw(st.integers(hard_min, min(hard_max, hard_min + 1000)))
    hi = draw(st.integers(lo, min(hard_max, lo + 2000)))
    rule: dict[str, Any] = {"min": lo, "max": hi}
    if draw(st.booleans()):
        rule["max_step_ratio"] = draw(st.floats(0.01, 5, allow_nan=False))
    approval = draw(st.sampled_from(["always", "never", "above_step"]))
    rule["approval"] = approval
    if approval == "above_step":
        rule["approval_above_step_ratio"] = draw(st.floats(0, 2, allow_nan=False))
    rule["cooldown_s"] = draw(st.sampled_from([0, 1, 60]))
    return rule


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    knobs: dict[str, Any] = {}
    chosen = draw(st.lists(st.sampled_from(sorted(INT_SPECS) + sorted(GLOB_KEYS)), unique=True, max_size=6))
    for key in chosen:
        spec = INT_SPECS.get(key) or GLOB_KEYS[key]
        assert spec.min is not None and spec.max is not None
        knobs[key] = draw(knob_rules(spec.min, spec.max))
    if draw(st.booleans()):
        knobs["thp.enabled"] = {
            "allow": draw(st.lists(st.sampled_from(["always", "madvise", "never"]), min_size=1, unique=True))
        }
    cross = []
    if draw(st.booleans()):
        cross.append({"rule": "less_than", "left": "vm.dirty_background_ratio", "right": "vm.dirty_ratio"})
    data = {
        "name": "random",
        "global": {"commits_per_hour": draw(st.integers(0, 5)), "max_confirm_within_s": 3600},
        "knobs": knobs,
        "cross": cross,
    }
    return parse_policy(data, catalog=CATALOG)


values = st.one_of(
    st.integers(-(2**40), 2**40),
    st.integers(-5, 3000),
    st.booleans(),
    st.sampled_from(["always", "madvise", "never", "", "max 100000", "50 100"]),
)


@st.composite
def changes(draw: st.DrawFn) -> Change:
    knob = draw(
        st.sampled_from(
            [
                *sorted(INT_SPECS),
                "thp.enabled",
                "cgroup.batch.cpu_weight",
                "cgroup.web.cpu_weight",
                "net.core.busy_poll",
            ]
        )
    )
    kind = "choice" if knob == "thp.enabled" else "int"
    if draw(st.integers(0, 9)) == 0:
        kind = draw(st.sampled_from(["int", "bool", "choice", "cpulist", "cpu_max", "weird"]))
    before = draw(st.one_of(st.none(), values))
    after = draw(values)
    return Change(knob=knob, kind=kind, before=before, after=after)


currents = st.dictionaries(st.sampled_from(["vm.dirty_ratio", "vm.dirty_background_ratio"]), values, max_size=2)
histories = st.builds(
    History,
    last=st.dictionaries(st.sampled_from(sorted(INT_SPECS)), st.floats(NOW - 200, NOW), max_size=4),
    commits=st.lists(st.floats(NOW - 7200, NOW), max_size=8).map(tuple),
)
deadlines = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10_000))


def _ints(*items: object) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in items)


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(),
    proposed=st.lists(changes(), max_size=5),
    current=currents,
    history=histories,
    confirm=deadlines,
    speculative=st.booleans(),
)
def test_evaluate_never_raises_and_every_denial_names_rule_knob_value_and_limit(
    policy: Policy,
    proposed: list[Change],
    current: dict[str, Value],
    history: History,
    confirm: float | None,
    speculative: bool,
) -> None:
    verdict = evaluate(
        policy,
        proposed,
        current=current,
        history=history,
        now=NOW,
        confirm_within_s=confirm,
        speculative=speculative,
    )
    assert verdict.allowed == (not verdict.denials)
    for denial in verdict.denials:
        assert denial.rule in RULES
        assert denial.limit is not None
        assert denial.message
        if denial.rule not in SET_WIDE:
            assert denial.knob is not None
            assert denial.knob in denial.message
    if speculative:
        assert not verdict.approval_required


@settings(max_examples=200, deadline=None)
@given(policy=policies(), proposed=st.lists(changes(), min_size=1, max_size=4), history=histories, current=currents)
def test_an_int_change_outside_its_bounds_is_always_denied(
    policy: Policy, proposed: list[Change], history: History, current: dict[str, Value]
) -> None:
    verdict = evaluate(policy, proposed, current=current, history=history, now=NOW)
    for change in proposed:
        matched = match_rule(policy, policy.knobs, change.knob, change.kind)
        if matched is None or change.kind != "int" or not _ints(change.after):
            continue
        rule = matched[1]
        assert rule.min is not None and rule.max is not None
        assert isinstance(change.after, int)
        if not rule.min <= change.after <= rule.max:
            assert not verdict.allowed
            expected = "below_min" if change.after < rule.min else "above_max"
            assert any(d.rule == expected and d.knob == change.knob for d in verdict.denials)


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(),
    proposed=st.lists(changes(), min_size=1, max_size=4),
    history=histories,
    current=currents,
    confirm=deadlines,
)
def test_an_allowed_change_set_keeps_every_bound(
    policy: Policy,
    proposed: list[Change],
    history: History,
    current: dict[str, Value],
    confirm: float | None,
) -> None:
    verdict = evaluate(policy, proposed, current=current, history=history, now=NOW, confirm_within_s=confirm)
    if not verdict.allowed:
        return
    assert len({c.knob for c in proposed}) == len(proposed)
    assert history.commits_since(NOW - 3600) + 1 <= policy.global_.commits_per_hour
    assert math.isfinite(verdict.confirm_within_s)
    assert 0 < verdict.confirm_within_s <= policy.global_.max_confirm_within_s
    values = {**current, **{c.knob: c.after for c in proposed}}
    for change in proposed:
        matched = match_rule(policy, policy.knobs, change.knob, change.kind)
        assert matched is not None
        rule = matched[1]
        if change.kind == "int":
            assert _ints(change.after)
            assert isinstance(change.after, int)
            assert rule.min is not None and rule.max is not None
            assert rule.min <= change.after <= rule.max
            if rule.max_step_ratio is not None and _ints(change.before):
                assert isinstance(change.before, int)
                assert abs(change.after - change.before) / max(abs(change.before), 1) <= rule.max_step_ratio
        if rule.allow is not None:
            assert change.after in rule.allow
        last = history.last_change_at(change.knob)
        if last is not None:
            assert NOW - last >= rule.cooldown_s
    for cross in policy.cross:
        if any(c.knob in (cross.left, cross.right) for c in proposed):
            left, right = values.get(cross.left), values.get(cross.right)
            assert isinstance(left, int) and isinstance(right, int)
            assert _ints(left, right) and left < right


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=30), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(
        st.dictionaries(st.sampled_from(["name", "global", "knobs", "cross", "speculation", "x"]), json_like),
        st.fixed_dictionaries(
            {
                "name": st.just("x"),
                "knobs": st.dictionaries(st.sampled_from([*INT_SPECS, "cgroup.*.cpu_weight"]), json_like),
            }
        ),
    )
)
def test_malformed_policy_data_gets_a_load_error_and_nothing_else(data: dict[str, Any]) -> None:
    try:
        parse_policy(data, catalog=CATALOG)
    except PolicyLoadError as exc:
        assert {"file", "field", "rule"} <= set(exc.fields)
