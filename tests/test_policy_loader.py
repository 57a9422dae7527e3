"""Loading policy files: the shipped ones load, broken ones fail naming file, field and rule."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import lumos_mcp.policy as policy_pkg
from lumos_mcp.errors import PolicyFileMissingError, PolicyLoadError
from lumos_mcp.knobs import default_catalog
from lumos_mcp.policy import Policy, load_policy, parse_policy
from lumos_mcp.resources import policy_path

SHIPPED = ["default", "readonly", "latency"]


def write(tmp_path: Path, body: str, name: str = "x.toml") -> Path:
    file = tmp_path / name
    file.write_text(textwrap.dedent(body))
    return file


def load_error(tmp_path: Path, body: str) -> dict[str, Any]:
    file = write(tmp_path, body)
    with pytest.raises(PolicyLoadError) as info:
        load_policy(file, default_catalog())
    fields = info.value.to_dict()
    assert fields["code"] == "policy_invalid"
    assert fields["file"] == str(file)
    return fields


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_policy_loads_against_the_shipped_catalog(name: str) -> None:
    policy = load_policy(policy_path(name), default_catalog())
    assert policy.name == name
    assert policy.global_.confirm_within_s <= policy.global_.max_confirm_within_s


def test_a_shipped_policy_loads_by_its_short_name() -> None:
    assert load_policy("latency").digest == load_policy(policy_path("latency")).digest


def test_the_readonly_policy_lists_no_knob_and_allows_no_commit() -> None:
    policy = load_policy("readonly")
    assert policy.knobs == {}
    assert policy.speculation.knobs == {}
    assert policy.global_.commits_per_hour == 0


def test_the_default_policy_lists_no_scheduler_or_cgroup_knob() -> None:
    policy = load_policy("default")
    assert policy.knobs
    assert all(k.startswith(("vm.", "net.")) for k in policy.knobs)
    assert all(rule.approval != "never" for rule in policy.knobs.values())


def test_the_latency_policy_covers_cfs_eevdf_sysctl_and_cgroup_cpu_knobs() -> None:
    policy = load_policy("latency")
    for knob in (
        "sched.latency_ns",
        "sched.wakeup_granularity_ns",
        "sched.min_granularity_ns",
        "sched.base_slice_ns",
        "kernel.sched_rr_timeslice_ms",
        "cgroup.*.cpu_weight",
        "cgroup.*.cpu_shares",
        "cgroup.*.cpu_idle",
        "cgroup.*.cpu_max",
        "vm.dirty_ratio",
        "vm.dirty_background_ratio",
    ):
        assert knob in policy.knobs
    assert set(policy.speculation.knobs) == {"cgroup.*.cpu_weight", "cgroup.*.cpu_shares"}


@pytest.mark.parametrize("name", ["default", "latency"])
def test_shipped_policies_carry_both_required_cross_rules(name: str) -> None:
    texts = {c.text() for c in load_policy(name).cross}
    assert "vm.dirty_background_ratio < vm.dirty_ratio" in texts
    assert "sched.wakeup_granularity_ns < sched.latency_ns" in texts


def test_a_bound_above_the_schema_type_names_file_field_and_keyword(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.swappiness"]
        min = 10
        max = "high"
        """,
    )
    assert err["field"] == "knobs/vm.swappiness/max"
    assert err["rule"] == "type"


def test_a_negative_step_ratio_breaks_the_exclusive_minimum(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.swappiness"]
        min = 10
        max = 20
        max_step_ratio = -1
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/vm.swappiness/max_step_ratio", "exclusiveMinimum")


def test_an_unknown_field_in_a_knob_rule_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.swappiness"]
        min = 10
        max = 20
        maximum = 30
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/vm.swappiness", "additionalProperties")


def test_above_step_approval_without_its_threshold_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.swappiness"]
        min = 10
        max = 20
        approval = "above_step"
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/vm.swappiness", "required")


def test_an_unknown_approval_mode_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."thp.enabled"]
        approval = "sometimes"
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/thp.enabled/approval", "enum")


def test_a_cross_rule_with_an_operator_outside_the_list_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [[cross]]
        rule = "__import__('os')"
        left = "vm.dirty_background_ratio"
        right = "vm.dirty_ratio"
        """,
    )
    assert (err["field"], err["rule"]) == ("cross/0/rule", "enum")


def test_a_file_that_is_not_toml_names_the_toml_rule(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name = \n")
    assert err["rule"] == "toml"


def test_a_missing_file_is_a_load_error_that_says_the_file_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileMissingError) as info:
        load_policy(tmp_path / "absent.toml")
    assert info.value.code == "policy_invalid"
    assert info.value.fields == {"file": str(tmp_path / "absent.toml"), "field": "", "rule": "exists"}


def test_a_knob_the_catalog_does_not_know_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.overcommit_memory"]
        min = 0
        max = 1
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/vm.overcommit_memory", "catalog_knob")


def test_a_glob_outside_a_parameter_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.dirty_*"]
        min = 0
        max = 1
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/vm.dirty_*", "catalog_knob")


def test_a_bound_outside_the_hard_range_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.swappiness"]
        min = 10
        max = 201
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/vm.swappiness/max", "hard_range")


def test_min_above_max_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."cgroup.*.cpu_weight"]
        min = 50
        max = 10
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/cgroup.*.cpu_weight/min", "min_le_max")


def test_an_int_knob_without_explicit_bounds_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.swappiness"]
        max = 20
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/vm.swappiness/min", "required_for_kind")


def test_an_allowed_value_that_is_not_a_choice_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."thp.enabled"]
        allow = ["madvise", "sometimes"]
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/thp.enabled/allow/1", "choices")


def test_bounds_on_a_choice_knob_are_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."block.*.scheduler"]
        min = 1
        max = 2
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/block.*.scheduler/max", "applies_to_kind")


def test_a_cross_rule_on_an_unknown_knob_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [[cross]]
        rule = "less_than"
        left = "vm.dirty_background_ratio"
        right = "vm.dirty_ratiox"
        """,
    )
    assert (err["field"], err["rule"]) == ("cross/0/right", "cross_knob")


def test_a_cross_rule_on_a_choice_knob_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [[cross]]
        rule = "less_than"
        left = "thp.enabled"
        right = "vm.dirty_ratio"
        """,
    )
    assert (err["field"], err["rule"]) == ("cross/0/left", "cross_knob")


def test_a_speculation_envelope_no_knob_rule_covers_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [speculation.knobs."cgroup.*.cpu_weight"]
        min = 10
        max = 20
        """,
    )
    assert (err["field"], err["rule"]) == ("speculation/knobs/cgroup.*.cpu_weight", "envelope")


def test_a_speculation_envelope_wider_than_its_knob_rule_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."cgroup.*.cpu_weight"]
        min = 10
        max = 200
        [speculation.knobs."cgroup.batch.cpu_weight"]
        min = 10
        max = 300
        """,
    )
    assert (err["field"], err["rule"]) == ("speculation/knobs/cgroup.batch.cpu_weight/max", "envelope")


def test_a_default_deadline_above_the_longest_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [global]
        confirm_within_s = 600
        max_confirm_within_s = 300
        """,
    )
    assert (err["field"], err["rule"]) == ("global/confirm_within_s", "max_confirm_within_s")


def test_a_short_maximum_deadline_needs_no_speculation_section(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, 'name = "x"\n[global]\nconfirm_within_s = 5\nmax_confirm_within_s = 8\n'))
    assert policy.global_.max_confirm_within_s == 8


def test_a_speculation_deadline_above_the_longest_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [global]
        confirm_within_s = 5
        max_confirm_within_s = 8
        [speculation]
        confirm_within_s = 9
        """,
    )
    assert (err["field"], err["rule"]) == ("speculation/confirm_within_s", "max_confirm_within_s")


def test_a_quota_ratio_on_an_int_knob_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        name = "x"
        [knobs."vm.swappiness"]
        min = 1
        max = 2
        min_quota_ratio = 0.5
        """,
    )
    assert (err["field"], err["rule"]) == ("knobs/vm.swappiness/min_quota_ratio", "applies_to_kind")


def test_parse_policy_names_the_given_file_in_errors() -> None:
    with pytest.raises(PolicyLoadError) as info:
        parse_policy({"name": "x", "knobs": {"nope.knob": {}}}, file="inline")
    assert info.value.fields == {"file": "inline", "field": "knobs/nope.knob", "rule": "catalog_knob"}


def test_a_concrete_cgroup_instance_and_a_block_glob_are_catalog_knobs() -> None:
    policy = parse_policy(
        {
            "name": "x",
            "knobs": {
                "cgroup.batch.cpu_weight": {"min": 1, "max": 100},
                "block.*.scheduler": {"allow": ["none", "mq-deadline"]},
            },
        }
    )
    assert policy.kind_of("cgroup.batch.cpu_weight") == "int"
    assert policy.kind_of("block.*.scheduler") == "choice"


def test_the_digest_ignores_formatting_and_changes_with_the_rules() -> None:
    base = {"name": "x", "knobs": {"vm.swappiness": {"min": 10, "max": 20}}}
    same = {"knobs": {"vm.swappiness": {"max": 20, "min": 10, "cooldown_s": 0}}, "name": "x"}
    other = {"name": "x", "knobs": {"vm.swappiness": {"min": 10, "max": 21}}}
    assert parse_policy(base).digest == parse_policy(same).digest
    assert parse_policy(base).digest != parse_policy(other).digest
    assert parse_policy(base).digest.startswith("sha256:")


def test_the_policy_is_frozen() -> None:
    policy = load_policy("default")
    with pytest.raises(ValueError, match="frozen"):
        policy.name = "other"


def test_the_summary_says_what_may_change_and_when_approval_is_needed() -> None:
    summary = load_policy("latency").summary()
    assert summary["default"].startswith("deny")
    weight = summary["knobs"]["cgroup.*.cpu_weight"]
    assert (weight["kind"], weight["min"], weight["max"]) == ("int", 1, 1000)
    assert "0.5" in weight["approval"]
    assert summary["speculation"]["knobs"]["cgroup.*.cpu_weight"]["confirm_within_s"] == 5
    assert {"rule": "less_than", "text": "vm.dirty_background_ratio < vm.dirty_ratio"}.items() <= summary["cross"][
        0
    ].items()


def test_the_public_api_is_pinned() -> None:
    assert sorted(policy_pkg.__all__) == [
        "Change",
        "CommitHistory",
        "CrossRule",
        "Denial",
        "EnvelopeRule",
        "GlobalRules",
        "History",
        "KnobRule",
        "Policy",
        "RULES",
        "Speculation",
        "Verdict",
        "evaluate",
        "evaluate_commit",
        "load_policy",
        "match_rule",
        "parse_policy",
        "raise_if_denied",
        "referenced_knobs",
    ]
    assert isinstance(load_policy("readonly"), Policy)
