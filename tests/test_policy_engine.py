"""The pure engine: every rule denied and allowed at its boundary, all denials at once."""

from __future__ import annotations

from typing import Any

import pytest

from lumos_mcp.errors import PolicyDeniedError
from lumos_mcp.policy import (
    RULES,
    Change,
    Policy,
    Verdict,
    load_policy,
    parse_policy,
    raise_if_denied,
    referenced_knobs,
)
from tests.policy_helpers import NOW, FakeHistory, run

POLICY: dict[str, Any] = {
    "name": "test",
    "global": {"confirm_within_s": 60, "max_confirm_within_s": 600, "commits_per_hour": 3},
    "knobs": {
        "vm.swappiness": {
            "min": 10,
            "max": 100,
            "max_step_ratio": 0.5,
            "approval": "above_step",
            "approval_above_step_ratio": 0.25,
            "cooldown_s": 60,
        },
        "vm.dirty_ratio": {"min": 5, "max": 40, "approval": "never"},
        "vm.dirty_background_ratio": {"min": 1, "max": 20, "approval": "never"},
        "thp.enabled": {"allow": ["madvise", "never"], "approval": "always"},
        "cgroup.*.cpu_weight": {"min": 1, "max": 1000, "approval": "never"},
        "cgroup.batch.cpu_weight": {"min": 1, "max": 50, "approval": "never"},
        "cgroup.*.cpu_idle": {"allow": [True], "approval": "never"},
        "cgroup.*.cpu_max": {"min_quota_ratio": 0.5, "approval": "never"},
        "cgroup.web.cpu_max": {"allow_unlimited": True, "approval": "never"},
    },
    "cross": [{"rule": "less_than", "left": "vm.dirty_background_ratio", "right": "vm.dirty_ratio"}],
    "speculation": {
        "confirm_within_s": 5,
        "knobs": {
            "cgroup.*.cpu_weight": {"min": 10, "max": 200, "max_step_ratio": 0.25, "cooldown_s": 1},
            "cgroup.fast.cpu_weight": {"min": 10, "max": 200, "confirm_within_s": 2},
        },
    },
}


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


def rules(verdict: Verdict) -> list[str]:
    return [d.rule for d in verdict.denials]


def swap(before: int | None, after: int) -> Change:
    return Change("vm.swappiness", "int", before, after)


def weight(name: str, before: int | None, after: int) -> Change:
    return Change(f"cgroup.{name}.cpu_weight", "int", before, after)


# --------------------------------------------------------------------------- listing
def test_a_knob_the_policy_does_not_list_is_denied(policy: Policy) -> None:
    verdict = run(policy, Change("vm.vfs_cache_pressure", "int", 100, 110))
    assert not verdict.allowed
    (denial,) = verdict.denials
    assert (denial.rule, denial.knob, denial.value) == ("not_allowed", "vm.vfs_cache_pressure", 110)
    assert "vm.vfs_cache_pressure" in denial.message and "110" in denial.message


def test_every_change_is_denied_under_the_readonly_policy() -> None:
    verdict = run(load_policy("readonly"), swap(60, 60))
    assert set(rules(verdict)) == {"not_allowed", "commits_per_hour"}


def test_a_glob_covers_any_cgroup_name(policy: Policy) -> None:
    assert run(policy, weight("anything", 100, 900)).allowed


def test_an_exact_knob_rule_beats_a_glob(policy: Policy) -> None:
    verdict = run(policy, weight("batch", 40, 60))
    assert rules(verdict) == ["above_max"]
    assert verdict.denials[0].limit == 50


def test_a_change_whose_kind_differs_from_the_rule_is_not_allowed(policy: Policy) -> None:
    assert rules(run(policy, Change("vm.swappiness", "choice", "60", "70"))) == ["not_allowed"]


# --------------------------------------------------------------------------- bounds
@pytest.mark.parametrize(("after", "expected"), [(9, ["below_min"]), (10, []), (100, []), (101, ["above_max"])])
def test_int_bounds_are_inclusive(policy: Policy, after: int, expected: list[str]) -> None:
    assert rules(run(policy, swap(None, after))) == expected


def test_a_bound_denial_names_the_value_and_the_limit(policy: Policy) -> None:
    (denial,) = run(policy, swap(None, 101)).denials
    assert (denial.knob, denial.value, denial.limit) == ("vm.swappiness", 101, 100)
    assert "101" in denial.message and "100" in denial.message and "maximum" in denial.message


@pytest.mark.parametrize(("after", "allowed"), [("madvise", True), ("never", True), ("always", False)])
def test_choice_values_must_be_on_the_allow_list(policy: Policy, after: str, allowed: bool) -> None:
    verdict = run(policy, Change("thp.enabled", "choice", "always", after))
    assert verdict.allowed is allowed
    if not allowed:
        assert rules(verdict) == ["not_in_allow"]
        assert verdict.denials[0].limit == ["madvise", "never"]


@pytest.mark.parametrize(("after", "allowed"), [(True, True), (False, False)])
def test_bool_values_must_be_on_the_allow_list(policy: Policy, after: bool, allowed: bool) -> None:
    assert run(policy, Change("cgroup.batch.cpu_idle", "bool", None, after)).allowed is allowed


def test_a_value_of_the_wrong_type_is_denied(policy: Policy) -> None:
    assert rules(run(policy, Change("vm.swappiness", "int", 60, True))) == ["not_allowed"]
    assert rules(run(policy, Change("cgroup.a.cpu_idle", "bool", None, "1"))) == ["not_allowed"]


@pytest.mark.parametrize(
    ("knob", "after", "expected"),
    [
        ("cgroup.batch.cpu_max", "50000 100000", []),
        ("cgroup.batch.cpu_max", "49999 100000", ["below_min"]),
        ("cgroup.batch.cpu_max", "max 100000", ["not_in_allow"]),
        ("cgroup.web.cpu_max", "max 100000", []),
        ("cgroup.web.cpu_max", "1000 100000", []),
        ("cgroup.batch.cpu_max", "lots", ["not_in_allow"]),
    ],
)
def test_cpu_max_limits_follow_the_quota_ratio_and_allow_unlimited(
    policy: Policy, knob: str, after: str, expected: list[str]
) -> None:
    assert rules(run(policy, Change(knob, "cpu_max", "max 100000", after))) == expected


# --------------------------------------------------------------------------- step
@pytest.mark.parametrize(
    ("after", "expected"), [(90, []), (91, ["step_too_large"]), (30, []), (29, ["step_too_large"])]
)
def test_the_step_ratio_is_allowed_up_to_its_limit(policy: Policy, after: int, expected: list[str]) -> None:
    assert rules(run(policy, swap(60, after))) == expected


def test_an_unknown_before_value_skips_the_step_check_but_needs_approval(policy: Policy) -> None:
    verdict = run(policy, swap(None, 100))
    assert verdict.allowed
    assert verdict.approval_required
    assert "unknown" in verdict.approval_reasons[0]


def test_the_step_ratio_divides_by_at_least_one(policy: Policy) -> None:
    verdict = run(policy, weight("x", 0, 1))  # glob rule has no step limit; check the formula elsewhere
    assert verdict.allowed
    spec = parse_policy(
        {"name": "s", "knobs": {"sched.wakeup_granularity_ns": {"min": 0, "max": 10, "max_step_ratio": 1}}}
    )
    assert run(spec, Change("sched.wakeup_granularity_ns", "int", 0, 1)).allowed
    assert rules(run(spec, Change("sched.wakeup_granularity_ns", "int", 0, 2))) == ["step_too_large"]


# --------------------------------------------------------------------------- approval
@pytest.mark.parametrize(("after", "required"), [(75, False), (76, True), (45, False), (44, True)])
def test_above_step_approval_starts_past_its_threshold(policy: Policy, after: int, required: bool) -> None:
    verdict = run(policy, swap(60, after))
    assert verdict.allowed
    assert verdict.approval_required is required


def test_always_approval_is_required_even_for_a_tiny_change(policy: Policy) -> None:
    verdict = run(policy, Change("thp.enabled", "choice", "never", "madvise"))
    assert verdict.allowed and verdict.approval_required
    assert "thp.enabled" in verdict.approval_reasons[0]


def test_never_approval_is_not_required(policy: Policy) -> None:
    assert not run(
        policy, Change("vm.dirty_ratio", "int", 10, 40), current={"vm.dirty_background_ratio": 5}
    ).approval_required


# --------------------------------------------------------------------------- cooldown and rate
@pytest.mark.parametrize(("ago", "allowed"), [(59.9, False), (60.0, True)])
def test_a_knob_in_its_cooldown_is_denied(policy: Policy, ago: float, allowed: bool) -> None:
    verdict = run(policy, swap(60, 61), history=FakeHistory(last={"vm.swappiness": NOW - ago}))
    assert verdict.allowed is allowed
    if not allowed:
        (denial,) = verdict.denials
        assert (denial.rule, denial.knob, denial.limit) == ("cooldown", "vm.swappiness", 60.0)


def test_another_knobs_recent_change_does_not_cool_this_one(policy: Policy) -> None:
    assert run(policy, swap(60, 61), history=FakeHistory(last={"vm.dirty_ratio": NOW})).allowed


@pytest.mark.parametrize(("commits", "allowed"), [(2, True), (3, False)])
def test_commits_per_hour_denies_the_one_that_would_exceed(policy: Policy, commits: int, allowed: bool) -> None:
    history = FakeHistory(commits=[NOW - 10] * commits + [NOW - 3601] * 5)
    verdict = run(policy, swap(60, 61), history=history)
    assert verdict.allowed is allowed
    if not allowed:
        (denial,) = verdict.denials
        assert (denial.rule, denial.knob, denial.value, denial.limit) == ("commits_per_hour", None, 4, 3)


# --------------------------------------------------------------------------- cross-field
def test_a_cross_rule_allows_a_change_that_keeps_it(policy: Policy) -> None:
    verdict = run(policy, Change("vm.dirty_background_ratio", "int", 5, 9), current={"vm.dirty_ratio": 10})
    assert verdict.allowed


def test_a_cross_rule_denies_at_its_boundary(policy: Policy) -> None:
    verdict = run(policy, Change("vm.dirty_background_ratio", "int", 5, 10), current={"vm.dirty_ratio": 10})
    (denial,) = verdict.denials
    assert (denial.rule, denial.knob, denial.value, denial.limit) == (
        "cross_field",
        "vm.dirty_background_ratio",
        10,
        10,
    )
    assert "vm.dirty_background_ratio < vm.dirty_ratio" in denial.message


def test_a_cross_rule_sees_both_sides_of_one_change_set(policy: Policy) -> None:
    ok = run(
        policy,
        Change("vm.dirty_ratio", "int", 10, 30),
        Change("vm.dirty_background_ratio", "int", 5, 15),
        current={"vm.dirty_ratio": 10, "vm.dirty_background_ratio": 5},
    )
    assert ok.allowed


def test_a_cross_rule_with_an_unknown_value_fails_closed(policy: Policy) -> None:
    verdict = run(policy, Change("vm.dirty_background_ratio", "int", 5, 6), current={})
    (denial,) = verdict.denials
    assert (denial.rule, denial.knob, denial.value) == ("cross_field", "vm.dirty_ratio", None)
    assert "unknown" in denial.message


def test_referenced_knobs_names_the_other_side_of_touched_cross_rules(policy: Policy) -> None:
    assert referenced_knobs(policy, [Change("vm.dirty_ratio", "int", 10, 20)]) == {"vm.dirty_background_ratio"}
    assert referenced_knobs(policy, [swap(60, 61)]) == set()


def test_an_unrelated_change_ignores_cross_rules_with_unknown_values(policy: Policy) -> None:
    assert run(policy, swap(60, 61), current={}).allowed


# --------------------------------------------------------------------------- change set and deadline
def test_an_empty_change_set_is_denied(policy: Policy) -> None:
    assert rules(run(policy)) == ["empty_change"]


def test_a_knob_twice_in_one_change_set_is_denied(policy: Policy) -> None:
    verdict = run(policy, swap(60, 61), swap(60, 62))
    assert rules(verdict) == ["duplicate_knob"]
    assert (verdict.denials[0].value, verdict.denials[0].limit) == (2, 1)


@pytest.mark.parametrize(
    ("asked", "allowed"), [(600, True), (600.5, False), (0, False), (-1, False), (float("nan"), False)]
)
def test_the_confirm_deadline_may_not_exceed_the_policy_maximum(policy: Policy, asked: float, allowed: bool) -> None:
    verdict = run(policy, swap(60, 61), confirm_within_s=asked)
    assert verdict.allowed is allowed
    if not allowed:
        assert rules(verdict) == ["confirm_too_long"]
        assert verdict.denials[0].limit == 600


def test_the_confirm_deadline_defaults_to_the_policy(policy: Policy) -> None:
    assert run(policy, swap(60, 61)).confirm_within_s == 60


def test_every_broken_rule_is_reported_not_only_the_first(policy: Policy) -> None:
    verdict = run(
        policy,
        swap(20, 150),
        Change("thp.enabled", "choice", "never", "always"),
        Change("vm.vfs_cache_pressure", "int", 100, 110),
        Change("vm.dirty_background_ratio", "int", 5, 6),
        history=FakeHistory(last={"vm.swappiness": NOW - 1}, commits=[NOW] * 3),
        confirm_within_s=10_000,
    )
    assert sorted(rules(verdict)) == sorted(
        [
            "above_max",
            "step_too_large",
            "cooldown",
            "not_in_allow",
            "not_allowed",
            "cross_field",
            "commits_per_hour",
            "confirm_too_long",
        ]
    )
    assert set(rules(verdict)) <= set(RULES)


def test_raise_if_denied_carries_every_denial_as_data(policy: Policy) -> None:
    verdict = run(policy, swap(None, 5), Change("vm.vfs_cache_pressure", "int", 1, 2))
    with pytest.raises(PolicyDeniedError) as info:
        raise_if_denied(verdict)
    data = info.value.to_dict()
    assert data["code"] == "policy_denied"
    assert [d["rule"] for d in data["denials"]] == ["below_min", "not_allowed"]
    assert set(data["denials"][0]) == {"rule", "knob", "value", "limit", "message"}


def test_raise_if_denied_is_silent_when_allowed(policy: Policy) -> None:
    raise_if_denied(run(policy, swap(60, 61)))


# --------------------------------------------------------------------------- speculation
def test_a_speculative_move_inside_the_envelope_needs_no_approval(policy: Policy) -> None:
    verdict = run(policy, weight("batch", 40, 50), speculative=True)
    assert verdict.allowed
    assert not verdict.approval_required
    assert verdict.confirm_within_s == 5


def test_a_speculative_move_outside_the_envelope_is_denied(policy: Policy) -> None:
    verdict = run(policy, swap(60, 61), speculative=True)
    assert rules(verdict) == ["outside_envelope"]
    assert verdict.denials[0].knob == "vm.swappiness"


def test_a_speculative_move_takes_bounds_and_step_from_the_envelope(policy: Policy) -> None:
    assert rules(run(policy, weight("a", 100, 201), speculative=True)) == ["above_max", "step_too_large"]
    assert rules(run(policy, weight("a", 100, 125), speculative=True)) == []
    assert rules(run(policy, weight("a", 100, 126), speculative=True)) == ["step_too_large"]
    assert rules(run(policy, weight("a", 10, 9), speculative=True)) == ["below_min"]


def test_a_speculative_move_also_keeps_the_knob_rules_bounds(policy: Policy) -> None:
    # cgroup.batch.cpu_weight: envelope allows up to 200, the knob rule only up to 50.
    verdict = run(policy, weight("batch", 50, 60), speculative=True)
    assert rules(verdict) == ["above_max"]
    assert verdict.denials[0].limit == 50


def test_a_speculative_move_takes_its_deadline_from_the_envelope(policy: Policy) -> None:
    assert run(policy, weight("fast", 100, 110), speculative=True).confirm_within_s == 2
    assert rules(run(policy, weight("a", 100, 110), speculative=True, confirm_within_s=6)) == ["confirm_too_long"]
    assert run(policy, weight("a", 100, 110), speculative=True, confirm_within_s=3).confirm_within_s == 3


def test_a_speculative_move_respects_the_envelope_cooldown_not_the_rate_limit(policy: Policy) -> None:
    history = FakeHistory(last={"cgroup.a.cpu_weight": NOW - 0.5}, commits=[NOW] * 100)
    assert rules(run(policy, weight("a", 100, 110), speculative=True, history=history)) == ["cooldown"]
    history.last["cgroup.a.cpu_weight"] = NOW - 1
    assert run(policy, weight("a", 100, 110), speculative=True, history=history).allowed


def test_shipped_latency_policy_lets_the_speculator_nudge_a_cgroup_weight() -> None:
    policy = load_policy("latency")
    assert run(policy, weight("batch", 100, 80), speculative=True).allowed
    assert rules(run(policy, Change("sched.base_slice_ns", "int", 3_000_000, 2_900_000), speculative=True)) == [
        "outside_envelope"
    ]


def test_shipped_latency_policy_guards_cfs_granularity_against_latency() -> None:
    policy = load_policy("latency")
    change = Change("sched.wakeup_granularity_ns", "int", 4_000_000, 5_000_000)
    assert referenced_knobs(policy, [change]) == {"sched.latency_ns"}
    assert run(policy, change, current={"sched.latency_ns": 24_000_000}).allowed
    assert rules(run(policy, change, current={"sched.latency_ns": 5_000_000})) == ["cross_field"]


def test_verdicts_serialise_to_plain_data(policy: Policy) -> None:
    data = run(policy, swap(None, 5)).to_dict()
    assert data["allowed"] is False
    assert data["denials"][0]["rule"] == "below_min"
