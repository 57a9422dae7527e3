"""Gaps of the policy engine that mutation testing found: every cross-field comparison at its
boundary, ``approval_above_step_ratio = 0``, and the exact fields of each denial."""

from __future__ import annotations

from typing import Any

import pytest

from lumos_mcp.policy import Change, Policy, Verdict, evaluate_commit, parse_policy
from lumos_mcp.policy.engine import Value
from tests.policy_helpers import NOW, FakeHistory, run

LEFT, RIGHT = "vm.dirty_background_ratio", "vm.dirty_ratio"


def make_policy(**extra: Any) -> Policy:
    data: dict[str, Any] = {
        "name": "gaps",
        "global": {"confirm_within_s": 60, "max_confirm_within_s": 600, "commits_per_hour": 3},
        "knobs": {
            LEFT: {"min": 0, "max": 100, "approval": "never"},
            RIGHT: {"min": 0, "max": 100, "approval": "never"},
        },
    }
    data.update(extra)
    return parse_policy(data)


def cross(op: str) -> Policy:
    return make_policy(cross=[{"rule": op, "left": LEFT, "right": RIGHT}])


# --------------------------------------------------------------------------- cross-field comparisons
# (left value, right value) -> does the rule hold; right is fixed at 10
CASES = {
    "less_than": {9: True, 10: False, 11: False},
    "less_equal": {9: True, 10: True, 11: False},
    "greater_than": {9: False, 10: False, 11: True},
    "greater_equal": {9: False, 10: True, 11: True},
    "equal": {9: False, 10: True, 11: False},
    "not_equal": {9: True, 10: False, 11: True},
}


@pytest.mark.parametrize(("op", "left", "holds"), [(op, v, h) for op, row in CASES.items() for v, h in row.items()])
def test_each_cross_rule_comparison_holds_exactly_where_its_operator_does(op: str, left: int, holds: bool) -> None:
    verdict = run(cross(op), Change(LEFT, "int", 50, left), current={RIGHT: 10})
    assert verdict.allowed is holds
    if not holds:
        (denial,) = verdict.denials
        assert (denial.rule, denial.knob, denial.value, denial.limit) == ("cross_field", LEFT, left, 10)


@pytest.mark.parametrize("op", list(CASES))
def test_a_cross_rule_broken_by_its_right_side_denies_that_knob_with_the_left_as_limit(op: str) -> None:
    # right changes to a value that breaks the rule against left = 10
    breaking = {"less_than": 10, "less_equal": 9, "greater_than": 10, "greater_equal": 11, "equal": 11}
    after = breaking.get(op, 10)
    verdict = run(cross(op), Change(RIGHT, "int", 50, after), current={LEFT: 10})
    (denial,) = verdict.denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("cross_field", RIGHT, after, 10)


def test_a_cross_rule_uses_the_proposed_value_over_the_current_one() -> None:
    # current says 50 (would break less_than 10); the change set moves it to 5
    verdict = run(cross("less_than"), Change(LEFT, "int", 50, 5), current={LEFT: 50, RIGHT: 10})
    assert verdict.allowed


def test_a_cross_rule_with_a_non_integer_value_fails_closed_naming_that_knob() -> None:
    verdict = run(cross("less_than"), Change(LEFT, "int", 50, 5), current={RIGHT: "ten"})
    (denial,) = verdict.denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("cross_field", RIGHT, "ten", f"{LEFT} < {RIGHT}")


def test_a_cross_rule_with_a_bool_value_fails_closed() -> None:
    verdict = run(cross("less_than"), Change(LEFT, "int", 50, 5), current={RIGHT: True})
    assert [(d.rule, d.knob) for d in verdict.denials] == [("cross_field", RIGHT)]


def test_a_cross_rule_missing_both_values_denies_each_side() -> None:
    policy = make_policy(
        knobs={"vm.swappiness": {"min": 0, "max": 100, "approval": "never"}},
        cross=[{"rule": "less_than", "left": LEFT, "right": RIGHT}],
    )
    # the rule touches LEFT only through the change set; LEFT's change is "not listed" and RIGHT unknown
    verdict = run(policy, Change(LEFT, "int", None, True))
    assert [(d.rule, d.knob) for d in verdict.denials] == [
        ("not_allowed", LEFT),
        ("cross_field", LEFT),
        ("cross_field", RIGHT),
    ]


# --------------------------------------------------------------------------- approval thresholds
def step_policy(ratio: float) -> Policy:
    return make_policy(
        knobs={"vm.swappiness": {"min": 0, "max": 200, "approval": "above_step", "approval_above_step_ratio": ratio}}
    )


def swap(before: int | None, after: Value) -> Change:
    return Change("vm.swappiness", "int", before, after)


@pytest.mark.parametrize(("after", "required"), [(50, False), (51, True), (100, True), (49, True)])
def test_approval_above_step_ratio_zero_requires_approval_for_any_step(after: int, required: bool) -> None:
    verdict = run(step_policy(0), swap(50, after))
    assert verdict.allowed
    assert verdict.approval_required is required
    assert len(verdict.approval_reasons) == int(required)


def test_a_full_step_needs_approval_when_the_threshold_is_half() -> None:
    verdict = run(step_policy(0.5), swap(50, 100))
    assert verdict.approval_required
    assert not run(step_policy(0.5), swap(50, 75)).approval_required


def test_above_step_approval_with_an_unknown_before_value_is_required() -> None:
    verdict = run(step_policy(10), swap(None, 60))
    assert verdict.approval_required
    assert verdict.approval_reasons[0].startswith("vm.swappiness:")


def test_above_step_approval_for_a_non_integer_value_is_required() -> None:
    # the value check denies it too; approval must not be skipped on the way
    verdict = run(step_policy(10), swap(50, "sixty"))
    assert verdict.approval_required


def test_approval_reasons_name_each_knob_that_needs_one() -> None:
    policy = make_policy(
        knobs={
            "vm.swappiness": {"min": 0, "max": 200, "approval": "always"},
            LEFT: {"min": 0, "max": 100, "approval": "above_step", "approval_above_step_ratio": 0.1},
        }
    )
    verdict = run(policy, swap(50, 51), Change(LEFT, "int", 10, 20))
    assert [r.split(":")[0] for r in verdict.approval_reasons] == ["vm.swappiness", LEFT]


# --------------------------------------------------------------------------- step and bounds fields
def test_a_step_denial_names_the_value_and_the_ratio_limit() -> None:
    policy = make_policy(knobs={"vm.swappiness": {"min": 0, "max": 200, "max_step_ratio": 0.5, "approval": "never"}})
    (denial,) = run(policy, swap(40, 61)).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("step_too_large", "vm.swappiness", 61, 0.5)
    assert run(policy, swap(40, 60)).allowed
    assert run(policy, swap(40, 20)).allowed
    assert not run(policy, swap(40, 19)).allowed


def raw_step_policy(low: int) -> Policy:
    """Bounds no catalog knob has (negative values): a policy model built without the catalog check."""
    knob = {"min": low, "max": 200, "max_step_ratio": 0.5, "approval": "never"}
    return Policy.model_validate({"name": "raw", "knobs": {"vm.swappiness": knob}})


def test_the_step_from_a_negative_value_is_sized_by_its_magnitude() -> None:
    policy = raw_step_policy(-100)
    assert run(policy, swap(-40, -20)).allowed
    assert not run(policy, swap(-40, -19)).allowed
    assert run(policy, swap(-40, -60)).allowed
    assert not run(policy, swap(-40, -61)).allowed


def test_the_step_from_zero_is_sized_against_one() -> None:
    policy = raw_step_policy(-5)
    assert run(policy, swap(0, 0)).allowed
    assert not run(policy, swap(0, 1)).allowed  # a ratio of 1 against the divisor 1, above 0.5
    assert not run(policy, swap(0, -1)).allowed


def test_a_below_min_denial_names_the_value_and_the_minimum() -> None:
    policy = make_policy(knobs={"vm.swappiness": {"min": 10, "max": 20, "approval": "never"}})
    (denial,) = run(policy, swap(15, 9)).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("below_min", "vm.swappiness", 9, 10)
    (denial,) = run(policy, swap(15, 21)).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("above_max", "vm.swappiness", 21, 20)


def test_a_rule_with_equal_bounds_allows_only_that_value_and_names_the_bound_broken() -> None:
    policy = make_policy(knobs={"vm.swappiness": {"min": 0, "max": 0, "approval": "never"}})
    assert run(policy, swap(0, 0)).allowed
    assert [d.rule for d in run(policy, swap(0, -1)).denials] == ["below_min"]


# --------------------------------------------------------------------------- denial fields, kinds, deadlines
CPU = "cgroup.web.cpu_max"


def cpu_policy(**rule: Any) -> Policy:
    return make_policy(knobs={"cgroup.*.cpu_max": {"approval": "never", **rule}})


def cpu(after: Value) -> Change:
    return Change(CPU, "cpu_max", "max 100000", after)


def test_an_empty_change_set_denial_has_its_exact_fields() -> None:
    (denial,) = run(make_policy()).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("empty_change", None, 0, 1)


@pytest.mark.parametrize(("after", "allowed"), [("1000 1", True), ("1000 0", False), ("0 1", False)])
def test_a_cpu_max_period_of_one_is_judged_and_zero_is_refused(after: str, allowed: bool) -> None:
    verdict = run(cpu_policy(min_quota_ratio=0.5), cpu(after))
    assert verdict.allowed is allowed


@pytest.mark.parametrize("after", ["lots 100000", "50000x 100000", "-5 100000", "max", "1 2 3", 50000])
def test_a_malformed_cpu_max_is_denied_with_the_expected_form_as_limit(after: Value) -> None:
    (denial,) = run(cpu_policy(), cpu(after)).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == (
        "not_in_allow",
        CPU,
        after,
        "'QUOTA PERIOD' or 'max PERIOD'",
    )


def test_removing_a_cpu_limit_is_denied_unless_the_rule_allows_unlimited() -> None:
    (denial,) = run(cpu_policy(), cpu("max 100000")).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == (
        "not_in_allow",
        CPU,
        "max 100000",
        "allow_unlimited = false",
    )
    assert run(cpu_policy(allow_unlimited=True), cpu("max 100000")).allowed


def test_a_cpu_max_below_its_quota_ratio_is_denied_with_value_and_ratio() -> None:
    (denial,) = run(cpu_policy(min_quota_ratio=0.5), cpu("49999 100000")).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("below_min", CPU, "49999 100000", 0.5)
    assert run(cpu_policy(min_quota_ratio=0.5), cpu("50000 100000")).allowed


def test_a_non_integer_for_an_int_knob_is_denied_with_its_value() -> None:
    (denial,) = run(step_policy(10), Change("vm.swappiness", "int", 50, "sixty")).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == (
        "not_allowed",
        "vm.swappiness",
        "sixty",
        "an integer",
    )


def test_a_change_of_an_unknown_kind_is_denied_not_raised() -> None:
    policy = Policy.model_validate({"name": "raw", "knobs": {"x.odd": {"approval": "never"}}})
    (denial,) = run(policy, Change("x.odd", "float", 1, 2)).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("not_allowed", "x.odd", 2, "a catalog kind")
    assert isinstance(denial.message, str) and denial.message


@pytest.mark.parametrize("asked", [True, False, "30", None])
def test_a_confirm_deadline_that_is_not_a_number_is_denied(asked: Any) -> None:
    verdict = run(make_policy(), Change(LEFT, "int", 5, 6), confirm_within_s=asked)
    if asked is None:
        assert verdict.allowed and verdict.confirm_within_s == 60
        return
    (denial,) = verdict.denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("confirm_too_long", None, asked, 600)


def test_a_cooldown_denial_reports_the_elapsed_time_to_the_millisecond() -> None:
    policy = make_policy(knobs={"vm.swappiness": {"min": 0, "max": 200, "approval": "never", "cooldown_s": 60}})
    history = FakeHistory(last={"vm.swappiness": NOW - 10.12345})
    (denial,) = run(policy, swap(50, 51), history=history).denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == ("cooldown", "vm.swappiness", 10.123, 60)


def every_kind_of_denial() -> list[Verdict]:
    both = make_policy(
        knobs={
            "vm.swappiness": {"min": 10, "max": 20, "max_step_ratio": 0.1, "approval": "never", "cooldown_s": 60},
            LEFT: {"min": 0, "max": 100, "approval": "never"},
            RIGHT: {"min": 0, "max": 100, "approval": "never"},
            "thp.enabled": {"allow": ["never"], "approval": "always"},
            "cgroup.*.cpu_max": {"min_quota_ratio": 0.5, "approval": "never"},
        },
        cross=[{"rule": "less_than", "left": LEFT, "right": RIGHT}],
    )
    history = FakeHistory(last={"vm.swappiness": NOW - 1}, commits=[NOW - 1] * 3)
    return [
        run(both),
        run(both, swap(15, 5), swap(15, 50), history=history, confirm_within_s=10_000),
        run(both, Change("thp.enabled", "choice", "never", "always"), Change("vm.overcommit_memory", "int", 0, 1)),
        run(both, Change("thp.enabled", "choice", "never", 3), Change(LEFT, "int", 5, 50), current={RIGHT: "x"}),
        run(both, Change(LEFT, "int", 5, 50), current={RIGHT: 10}),
        run(both, cpu("10 100000"), cpu("nonsense"), swap(15, "x")),
        run(both, cpu("max 100000"), Change("x.odd", "float", 1, 2)),
        run(both, Change("cgroup.web.cpu_weight", "int", 1, 2), speculative=True),
    ]


def test_every_denial_and_approval_reason_carries_a_message() -> None:
    verdicts = every_kind_of_denial()
    rules = {d.rule for v in verdicts for d in v.denials}
    assert rules >= {
        "empty_change",
        "duplicate_knob",
        "below_min",
        "above_max",
        "step_too_large",
        "cooldown",
        "commits_per_hour",
        "confirm_too_long",
        "not_in_allow",
        "not_allowed",
        "cross_field",
        "outside_envelope",
    }
    for verdict in verdicts:
        for denial in verdict.denials:
            assert isinstance(denial.message, str) and denial.message, denial
        assert all(isinstance(r, str) and r for r in verdict.approval_reasons)
    reasons = run(step_policy(0.1), swap(50, 100)).approval_reasons
    assert len(reasons) == 1 and reasons[0].startswith("vm.swappiness:")


# --------------------------------------------------------------------------- gaps the run on main found
SPECULATION = {
    "confirm_within_s": 5,
    "knobs": {"cgroup.*.cpu_weight": {"min": 10, "max": 200, "max_step_ratio": 0.5}},
}


def speculating() -> Policy:
    return make_policy(
        knobs={"cgroup.*.cpu_weight": {"min": 1, "max": 1000, "max_step_ratio": 0.1, "approval": "never"}},
        speculation=SPECULATION,
    )


def test_a_speculative_move_takes_its_step_from_the_envelope_not_from_the_knob_rule() -> None:
    policy = speculating()
    move = Change("cgroup.batch.cpu_weight", "int", 100, 140)  # 40%: the envelope allows it, the knob rule 10%
    assert run(policy, move, speculative=True).allowed
    assert [d.rule for d in run(policy, move).denials] == ["step_too_large"]


def test_a_speculative_move_outside_the_envelope_names_the_knob_value_and_envelope() -> None:
    verdict = run(speculating(), Change(LEFT, "int", 10, 12), speculative=True)
    assert [(d.rule, d.knob, d.value, d.limit) for d in verdict.denials][:1] == [
        (
            "outside_envelope",
            LEFT,
            12,
            "speculation envelope of policy 'gaps'",
        )
    ]


class Commits:
    def __init__(self, times: list[float]) -> None:
        self.times = times

    def committed_since(self, ts: float) -> int:
        return sum(1 for t in self.times if t >= ts)


def test_a_commit_within_commits_per_hour_is_allowed_and_one_beyond_is_denied_with_its_fields() -> None:
    policy = make_policy()  # commits_per_hour = 3
    allowed = evaluate_commit(policy, history=Commits([NOW - 10, NOW - 5]), now=NOW)
    assert (allowed.allowed, allowed.denials, allowed.approval_required) == (True, (), False)
    denied = evaluate_commit(policy, history=Commits([NOW - 3599, NOW - 10, NOW - 5]), now=NOW)
    assert denied.allowed is False
    assert [(d.rule, d.knob, d.value, d.limit) for d in denied.denials] == [("commits_per_hour", None, 4, 3)]
    assert all(d.message for d in denied.denials)
    assert evaluate_commit(policy, history=Commits([NOW - 3601, NOW - 10, NOW - 5]), now=NOW).allowed


def test_one_change_naming_two_aliases_of_a_file_is_denied_and_each_alone_is_allowed() -> None:
    policy = make_policy(
        knobs={
            "cgroup.*.cpu_weight": {"min": 1, "max": 10000, "approval": "never"},
            "cgroup.*.cpu_shares": {"min": 2, "max": 262144, "approval": "never"},
        }
    )
    shares = ("sys/fs/cgroup/cpu/batch/cpu.shares",)
    weight = Change("cgroup.batch.cpu_weight", "int", 100, 50, files=shares)
    alias = Change("cgroup.batch.cpu_shares", "int", 1024, 512, files=shares)
    other = Change("cgroup.web.cpu_weight", "int", 100, 50, files=("sys/fs/cgroup/cpu/web/cpu.shares",))
    assert run(policy, weight).allowed
    assert run(policy, weight, other).allowed
    verdict = run(policy, weight, alias, other)
    assert [(d.rule, d.knob, d.value, d.limit) for d in verdict.denials] == [
        ("duplicate_knob", "cgroup.batch.cpu_shares", 2, 1)
    ]
