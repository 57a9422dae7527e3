"""The compact view of the signature: what it keeps, at which paths, and that the expert decides the same on it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from lumos_mcp.agents.expert import CPU_PRESSURE_PCT, MEMORY_PRESSURE_PCT, metric, objective, propose
from lumos_mcp.telemetry.brief import (
    EXACT_PATHS,
    HEADLINE_PATHS,
    MAX_APP,
    brief_paths,
    brief_signature,
    brief_trends,
    rounded,
)
from lumos_mcp.telemetry.signature import MetricTrend, Signature, Trends
from tests.telemetry.test_signature import replay_step

RECORDED = Path(__file__).resolve().parents[1] / "data" / "ranker" / "signature.json"
"""A signature recorded on this project's reference machine (2 vCPU, kernel 6.18, a batch antagonist)."""

TUNABLES: list[dict[str, Any]] = [
    {"id": "cgroup.batch.cpu_weight", "state": "available", "value": 100, "policy": {"allowed": True, "min": 1}},
    {"id": "vm.swappiness", "state": "available", "value": 60, "policy": {"allowed": True, "max_step_ratio": 0.5}},
    {"id": "vm.dirty_background_ratio", "state": "available", "value": 10, "policy": {"allowed": True}},
    {"id": "vm.dirty_ratio", "state": "available", "value": 20, "policy": {"allowed": True}},
]
TRIED = [set(), {"cgroup.batch.cpu_weight"}, {"cgroup.batch.cpu_weight", "vm.swappiness"}]
DERIVED = ("cpu.core_util_", "io.", "cgroups.", "app.")
"""Brief numbers that are sums, extremes or name-keyed (the full signature lists them per item)."""


def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    return data


def _near(threshold: float) -> st.SearchStrategy[float]:
    """Values on and around a threshold, where a rounding would flip a comparison."""
    return st.sampled_from([threshold - 0.004, threshold - 1e-9, threshold, threshold + 0.004]) | st.floats(
        0, 100, allow_nan=False
    )


_APP_NAMES = ["api.latency_p99_ms", "orders.rps", "db.p99_ms", "queue.depth", "web.latency_ms", "cache.hit_pct"]


@st.composite
def signatures(draw: st.DrawFn) -> Signature:
    data = recorded()
    psi = data["psi"]
    psi["cpu"]["some"]["avg10_pct"] = draw(_near(CPU_PRESSURE_PCT))
    psi["cpu"]["some"]["window_pct"] = draw(st.none() | _near(CPU_PRESSURE_PCT))
    psi["memory"]["some"]["avg10_pct"] = draw(_near(MEMORY_PRESSURE_PCT))
    data["memory"]["major_faults_per_s"] = draw(st.none() | _near(10.0))
    names = draw(st.lists(st.sampled_from(_APP_NAMES), unique=True, max_size=len(_APP_NAMES)))
    data["app"] = [
        {
            "name": name,
            "unit": "ms",
            "last": draw(st.floats(0, 1e4, allow_nan=False)),
            "mean": draw(st.floats(0, 1e4, allow_nan=False)),
            "p95": draw(st.floats(0, 1e4, allow_nan=False)),
            "count": draw(st.integers(1, 100)),
            "last_age_s": draw(st.floats(0, 60, allow_nan=False)),
        }
        for name in names
    ]
    return Signature.model_validate(data)


@settings(max_examples=150, deadline=None)
@given(signatures())
@example(Signature.model_validate(recorded()))
def test_the_expert_decides_the_same_on_the_brief_as_on_the_full_signature(sig: Signature) -> None:
    full = sig.model_dump(mode="json")
    brief = brief_signature(sig).model_dump(mode="json")
    assert objective(brief) == objective(full)
    for tried in TRIED:
        assert propose(brief, copy.deepcopy(TUNABLES), set(tried)) == propose(full, copy.deepcopy(TUNABLES), set(tried))


def test_the_recorded_signature_makes_the_expert_act_so_the_comparison_has_a_decision_to_keep() -> None:
    full = recorded()
    proposal = propose(full, copy.deepcopy(TUNABLES), set())
    assert proposal is not None and proposal.rule == "cpu-contention"
    assert objective(full) == full["psi"]["cpu"]["some"]["window_pct"]


def test_every_number_in_the_brief_names_the_same_metric_in_the_full_signature() -> None:
    sig = Signature.model_validate(recorded())
    full = sig.model_dump(mode="json")
    brief = brief_signature(sig).model_dump(mode="json")
    paths = [p for p in brief_paths(brief_signature(sig)) if not p.startswith(DERIVED)]
    assert "psi.cpu.some.avg10_pct" in paths and "cpu.total.util_pct" in paths
    for path in paths:
        value = metric(full, path)
        expected = value if path in EXACT_PATHS else rounded(value)
        assert metric(brief, path) == expected, path


def test_the_brief_keeps_latency_metrics_first_and_counts_what_it_leaves_out() -> None:
    data = recorded()
    names = [f"m{i}.rps" for i in range(MAX_APP + 2)] + ["api.latency_p99_ms"]
    data["app"] = [
        {"name": n, "unit": "ms", "last": 1.0, "mean": 1.0, "p95": 1.0, "count": 1, "last_age_s": 0.0} for n in names
    ]
    brief = brief_signature(Signature.model_validate(data))
    assert brief.app is not None and brief.app[0].name == "api.latency_p99_ms"
    assert len(brief.app) == MAX_APP and brief.app_omitted == len(names) - MAX_APP


def test_a_section_left_out_of_the_signature_is_null_in_the_brief_and_has_no_note() -> None:
    data = recorded()
    data["io"] = None
    data["network"] = None
    brief = brief_signature(Signature.model_validate(data))
    assert brief.io is None and brief.network is None
    assert "io" not in brief.notes and "network" not in brief.notes and "psi" in brief.notes


def _trend(current: float, baseline: float) -> MetricTrend:
    delta = current - baseline
    return MetricTrend(
        current_mean=current,
        baseline_mean=baseline,
        delta=delta,
        delta_pct=100 * delta / abs(baseline) if baseline else None,
        slope_per_s=0.0,
        ewma=current,
        pooled_sd=0.1,
        current_samples=5,
        baseline_samples=5,
        shift=False,
    )


def test_notes_say_how_each_sections_headline_moved_and_trends_keep_baselines_of_moving_metrics() -> None:
    sig = Signature.model_validate(recorded())
    trends = Trends(
        window_s=10,
        baseline_s=10,
        rule="test",
        metrics={
            "cpu.total.util_pct": _trend(90.0, 50.0),
            "psi.cpu.some.window_pct": _trend(40.0, 41.0),
            "memory.major_faults_per_s": _trend(0.0, 0.0),
        },
        shift_detected=False,
        shifts=[],
    )
    brief = brief_signature(sig, trends)
    assert brief.notes["cpu"].endswith("; CPU use up 80%")
    assert brief.notes["psi"].endswith("; CPU stall steady")
    assert "major faults steady" not in brief.notes["memory"]  # 0 before and after: no trend to tell
    summary = brief_trends(trends, brief)
    assert summary.baseline == {"cpu.total.util_pct": 50.0, "psi.cpu.some.window_pct": 41.0}


def test_on_the_recorded_step_to_busy_cpus_the_brief_reports_the_shift_and_only_its_own_metrics(
    tmp_path: Path,
) -> None:
    t, _ = replay_step(tmp_path)
    sig = t.signature(5.0, {"cpu", "sched", "psi"})
    paths = set(brief_paths(brief_signature(sig))) | HEADLINE_PATHS
    trends = t.trends(5.0, 5.0, {"cpu", "sched", "psi"}, paths)
    assert set(trends.metrics) <= paths and "cpu.total.util_pct" in trends.metrics
    assert not any(m.startswith("cpu.per_core") for m in trends.metrics)
    brief = brief_signature(sig, trends)
    summary = brief_trends(trends, brief)
    assert summary.shift_detected and summary.shifts[0].direction == "up"
    assert "cpu.total.util_pct" in {s.metric for s in summary.shifts}
    assert "; CPU use up" in brief.notes["cpu"]
