"""The speculator's weight-jump recovery scenario: the recovery measure on synthetic timestamped
latencies (exact values), the arm comparison, and the scenario's wiring through the service."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from benchmarks import speculator_recovery as bench
from lumos_mcp.arena.workloads import ProbeWorkload
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.cgroups import CgroupManager
from lumos_mcp.service import Service

ROOT = Path(__file__).resolve().parents[2]
LIVE_OK = os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup/cpu")


def requests(
    bad: tuple[float, float] | None = (5.0, 7.95), *, until: float = 20.0, bad_ms: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """1 kHz requests from t=0 to ``until`` (request i at i ms), 0.1 ms each, ``bad_ms`` in ``bad``."""
    t = np.arange(int(until * 1000)) / 1000
    lat = np.full(t.size, 0.1)
    if bad is not None:
        lat[(t >= bad[0]) & (t < bad[1])] = bad_ms
    return t, lat


def recover(t: np.ndarray, lat: np.ndarray, **kw: float) -> float | None:
    args: dict[str, float] = {"perturb_at": 5.0, "end": 20.0, "slo_ms": 1.0, "step_s": 0.01, "hold_s": 3.0} | kw
    return bench.recovery_time(t, lat, **args)


def test_recovery_is_the_first_step_where_the_rolling_share_over_the_slo_falls_to_one_percent() -> None:
    # last slow request at 7.949 s; the 1 s window ending at 8.94 holds 9 of them (0.9%), at 8.93 it holds 19
    assert recover(*requests()) == pytest.approx(3.94, abs=1e-9)
    # on a 0.1 s grid the first step past 8.94 is 9.0
    assert recover(*requests(), step_s=0.1) == pytest.approx(4.0, abs=1e-9)


def test_timed_out_requests_count_as_over_the_slo() -> None:
    assert recover(*requests(bad_ms=math.inf)) == pytest.approx(3.94, abs=1e-9)


def test_a_relapse_inside_the_hold_moves_recovery_past_the_relapse() -> None:
    t, lat = requests()
    lat[(t >= 10.0) & (t < 10.5)] = 5.0  # relapse; its last slow request at 10.499 s
    assert recover(t, lat) == pytest.approx(6.49, abs=1e-9)
    # a 1 s hold (8.94 -> 9.94) ends before the relapse begins
    assert recover(t, lat, hold_s=1.0) == pytest.approx(3.94, abs=1e-9)


def test_no_recovery_before_the_end_or_without_a_complete_hold_is_censored() -> None:
    assert recover(*requests((5.0, 30.0))) is None
    assert recover(*requests(), end=10.0) is None  # 8.94 + 3 s hold > 10


def test_a_window_without_requests_is_not_a_recovered_one() -> None:
    t, lat = requests(None)
    keep = (t < 5.0) | (t >= 8.05)  # the client stalled: nothing scheduled in [5, 8.05)
    # the window ending at 8.0 is empty; the one ending at 8.1 holds the requests from 8.05
    assert recover(t[keep], lat[keep], step_s=0.1) == pytest.approx(3.1, abs=1e-9)


def test_a_perturbation_that_never_hurts_recovers_at_once() -> None:
    assert recover(*requests(None)) == 0.0


def test_peak_share_reports_how_much_the_perturbation_hurt() -> None:
    t, lat = requests((5.0, 5.2))
    peak = bench.peak_share(t, lat, start=5.0, stop=6.0, slo_ms=1.0)
    assert peak == pytest.approx(0.2, abs=0.002)
    assert bench.peak_share(*requests(None), start=5.0, stop=6.0, slo_ms=1.0) == 0.0


def test_arms_are_compared_by_bootstrap_medians_with_censored_runs_at_their_bound() -> None:
    rows = []
    for r, (agent, both, spec) in enumerate([(20.0, 4.0, 5.0), (18.0, 5.0, None), (22.0, 3.0, 4.0)]):
        for arm, value in (("agent", agent), ("both", both), ("speculator", spec)):
            rows.append({"arm": arm, "round": r, "recover_s": value, "censored_at_s": 30.0, "before_share": 0.02 * r})
    out = bench.compare_arms(rows)
    assert out["arms"]["agent"]["median"] == 20.0 and out["arms"]["both"]["median"] == 4.0
    assert out["arms"]["speculator"]["per_run"] == [5.0, 30.0, 4.0] and out["arms"]["speculator"]["censored"] == 1
    assert out["p_both_beats_agent"] == 1.0
    assert out["arms"]["agent"]["noisy_baseline"] == 2  # rounds 1 and 2: 2% and 4% over the SLO before the jump
    assert out["speedup_agent_over_both"]["median"] == pytest.approx(5.0)  # 20/4, 18/5, 22/3
    assert out["arms"]["agent"]["low"] <= 20.0 <= out["arms"]["agent"]["high"]


def _audit_actors(service: Service) -> list[str]:
    lines = service.audit.path.read_text().splitlines()
    return [json.loads(line).get("actor", "") for line in lines]


@pytest.fixture
def probe() -> Iterator[ProbeWorkload]:
    with ProbeWorkload() as p:
        yield p
    assert psutil.Process().children(recursive=True) == []


@pytest.mark.slow
def test_one_run_writes_only_through_the_service_and_puts_the_knob_back(
    make_service: Callable[..., Service], probe: ProbeWorkload
) -> None:
    service = make_service(policy=str(ROOT / "policies" / "speculate.toml"))
    knob = "cgroup.batch.cpu_shares"
    # an SLO no request meets: the agent acts on every observation, the speculator moves every second
    cfg = bench.JumpConfig(perturb_at_s=0.5, after_s=2.5, slo_ms=1e-6, deliberate_s=(0.3, 0.4), spec_interval_s=0.5)
    run = bench.jump_run(service, knob, probe.address, "both", cfg, seed=7)
    who = [e["who"] for e in run["events"]]
    assert "perturbation" in who and "agent" in who and "speculator" in who
    assert run["events"][who.index("perturbation")]["value"] == cfg.high
    assert any(value == cfg.high for _, value in run["shares"])
    assert len(run["requests"][0]) > 1000 and len(run["requests"][0]) == len(run["requests"][1])
    actors = set(_audit_actors(service))
    assert {"perturbation", "agent", "speculator", "benchmark"} <= actors
    assert service.backend.read(knob).value == cfg.low
    assert [tx for tx in service.txns.transactions() if tx.state.value == "applied"] == []
    summary = bench.jump_summary(run)
    assert summary["arm"] == "both" and summary["recover_s"] is None  # nothing meets that SLO


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(not LIVE_OK, reason="needs root and cgroup v1")
def test_live_jump_session_writes_through_the_service_and_leaves_no_cgroup_or_process(tmp_path: Path) -> None:
    parent = f"lumos-test-jump-{os.getpid()}"
    out = tmp_path / "runs.jsonl"
    args = argparse.Namespace(
        rounds=1,
        seed=3,
        arms="speculator",
        after=2.0,
        perturb_at=1.0,
        parent=parent,
        out=str(out),
        warmup=0.5,
        state_dir=str(tmp_path / "state"),
        slo_ms=1.0,
        parent_shares=2048,
    )
    assert bench.cmd_jump(args) == 0
    (run,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert run["arm"] == "speculator" and run["loadavg"]
    # the jump is recorded (the speculator may move first: it acts on a tail already noisy before the jump)
    assert [e["value"] for e in run["events"] if e["who"] == "perturbation"] == [bench.JumpConfig().high]
    assert len(run["requests"][0]) > 1000
    audit = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert {"perturbation", "benchmark"} <= {r.get("actor") for r in audit}
    # the parent's weight was set through the service too, and put back
    parent_writes = [r for r in audit if f"{parent}.cpu_shares" in json.dumps(r) and r.get("actor") == "benchmark"]
    assert len(parent_writes) >= 2
    assert not CgroupManager(KernelRoot("/")).exists(parent)
    assert psutil.Process().children(recursive=True) == []


def test_the_jump_is_timed_when_issued_not_when_its_commit_returns() -> None:
    cfg = bench.JumpConfig()
    events = [{"t": 4.8, "who": "perturbation", "value": cfg.high, "issued_at": 4.09}]
    shares = [(3.9, 64), (4.1, cfg.high)]
    assert bench.perturbed_at(events, shares, cfg) == 4.09
    # runs recorded before issued_at existed: the loop's sample taken just before the write
    assert bench.perturbed_at([{"t": 4.8, "who": "perturbation"}], shares, cfg) == 4.1
    assert bench.perturbed_at([], [], cfg) == cfg.perturb_at_s
