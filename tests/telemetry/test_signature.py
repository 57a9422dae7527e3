from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import anyio
import pytest
from telemetry_helpers import DATA, FakeClock, recorded_tree

from lumos_mcp.errors import InvalidTelemetryRequestError, TelemetryNotReadyError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.resources import schema_path
from lumos_mcp.telemetry import PerfStat, ShiftRule, Signature, Telemetry, telemetry_json_schema
from lumos_mcp.telemetry.trends import compute_trends


def tick_stat(root_base: Path, user: int = 50, idle: int = 150) -> None:
    """Advance every cpu line of the tree's /proc/stat, as a second of CPU time would."""
    path = root_base / "proc" / "stat"
    lines = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu"):
            parts[1] = str(int(parts[1]) + user)
            parts[4] = str(int(parts[4]) + idle)
            line = " ".join(parts)
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def two_samples(telemetry: Telemetry, clock: FakeClock, gap_s: float = 1.0) -> None:
    telemetry.sampler.sample_once()
    clock.advance(gap_s)
    tick_stat(telemetry.root.base)
    telemetry.sampler.sample_once()


def test_signature_on_this_machines_texts_has_every_section_and_says_what_is_missing(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18", release="6.18.44-fc-v669")
    clock = FakeClock()
    t = Telemetry(fake.root, clock=clock)
    two_samples(t, clock)
    sig = t.signature(window_s=10)
    assert sig.schema_version == "1" and sig.kernel_release == "6.18.44-fc-v669"
    assert sig.samples_used == 2 and sig.covered_s == pytest.approx(1.0)
    assert sig.cpu is not None and sig.cpu.cores == 2
    assert sig.cpu.total.util_pct == pytest.approx(25.0)
    assert sig.psi is not None and sig.psi.cpu is not None
    assert sig.sched is not None and sig.sched.run_delay_ms_per_s is None
    assert "CONFIG_SCHEDSTATS" in sig.unavailable["sched.run_delay"]
    assert sig.perf is None and "perf" in sig.unavailable
    assert sig.io is not None and {d.device for d in sig.io} == {"vda", "zram0"}


def test_a_kernel_without_psi_has_a_null_psi_section_and_a_reason(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "4.19-nopsi")
    clock = FakeClock()
    t = Telemetry(fake.root, clock=clock)
    two_samples(t, clock)
    sig = t.signature(5)
    assert sig.psi is None and "PSI" in sig.unavailable["psi"]


def test_sections_filter_nulls_the_others_and_their_reasons(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    clock = FakeClock()
    t = Telemetry(fake.root, clock=clock)
    two_samples(t, clock)
    sig = t.signature(5, sections={"cpu", "memory"})
    assert sig.cpu is not None and sig.memory is not None
    assert sig.sched is None and sig.psi is None and sig.io is None and sig.network is None
    assert all(k.split(".")[0] in {"cpu", "memory"} for k in sig.unavailable)


@pytest.mark.parametrize("bad", [{"window_s": 0.0}, {"window_s": float("nan")}, {"sections": {"cpu", "gpu"}}])
def test_bad_signature_requests_are_refused(fake: FakeKernel, bad: dict[str, object]) -> None:
    t = Telemetry(fake.root, clock=FakeClock())
    kwargs: dict[str, object] = {"window_s": 5.0, "sections": None} | bad
    with pytest.raises(InvalidTelemetryRequestError) as info:
        t.signature(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == "invalid_telemetry_request"


def test_identical_stat_texts_give_no_cpu_shares_rather_than_zeros(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    clock = FakeClock()
    t = Telemetry(fake.root, clock=clock)
    t.sampler.sample_once()
    clock.advance(1.0)
    t.sampler.sample_once()
    sig = t.signature(5)
    assert sig.cpu is None and "no CPU tick" in sig.unavailable["cpu"]


def test_a_signature_before_two_samples_is_not_ready(fake: FakeKernel) -> None:
    t = Telemetry(fake.root, clock=FakeClock())
    t.sampler.sample_once()
    with pytest.raises(TelemetryNotReadyError) as info:
        t.signature(5)
    assert info.value.fields["samples"] == 1


def test_the_window_uses_only_the_last_window_s_of_samples(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    clock = FakeClock()
    t = Telemetry(fake.root, clock=clock)
    for _ in range(10):
        t.sampler.sample_once()
        clock.advance(1.0)
    sig = t.signature(3)
    assert sig.samples_used == 4 and sig.covered_s == pytest.approx(3.0)


def test_perf_rates_fill_the_perf_section_and_migrations(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    clock = FakeClock()
    perf = PerfStat(interval_ms=1000)
    t = Telemetry(fake.root, clock=clock, perf=perf)
    t.sampler.sample_once()
    clock.advance(1.0)
    perf._read_lines_for_test(  # feed recorded lines without a process
        [
            "1.0,10,,context-switches,1,100.00,,",
            "1.0,3,,cpu-migrations,1,100.00,,",
            "1.0,7,,page-faults,1,100.00,,",
            "1.0,1500.0,msec,task-clock,1,100.00,,",
            "1.0,<not supported>,,cycles,0,100.00,,",
            "1.0,<not supported>,,instructions,0,100.00,,",
            "1.0,<not supported>,,cache-misses,0,100.00,,",
            "1.0,<not supported>,,LLC-load-misses,0,100.00,,",
        ]
    )
    t.sampler.sample_once()
    sig = t.signature(5)
    assert sig.perf is not None
    assert sig.perf.cpu_migrations_per_s == pytest.approx(3.0)
    assert sig.perf.task_clock_cpus == pytest.approx(1.5)
    assert sig.perf.ipc is None and "perf.ipc" in sig.unavailable
    assert "not supported" in sig.unavailable["perf.cycles"]
    assert sig.sched is not None and sig.sched.migrations_per_s == pytest.approx(3.0)
    assert "sched.migrations_per_s" not in sig.unavailable


def test_committed_schema_equals_the_generated_one() -> None:
    committed = json.loads(schema_path("telemetry.schema.json").read_text())
    assert committed == telemetry_json_schema()


def test_signature_round_trips_through_its_json_schema(tmp_path: Path) -> None:
    import jsonschema

    fake = recorded_tree(tmp_path, "5.15")
    clock = FakeClock()
    t = Telemetry(fake.root, clock=clock)
    two_samples(t, clock)
    payload = json.loads(t.signature(5).model_dump_json())
    schema = telemetry_json_schema()
    jsonschema.validate(payload, {**schema, "$ref": "#/$defs/Signature"})
    assert Signature.model_validate(payload).cpu is not None


# --------------------------------------------------------------------------- trends
def replay_step(tmp_path: Path) -> tuple[Telemetry, FakeClock]:
    """Replay the idle-then-busy series recorded on this machine (0.5 s apart)."""
    step = DATA / "6.18-step"
    fake = FakeKernel(tmp_path)
    clock = FakeClock()
    t = Telemetry(fake.root, interval_s=0.5, clock=clock)
    for line in (step / "clock").read_text().splitlines():
        index, when = line.split()
        shutil.copytree(step / index, tmp_path / "proc", dirs_exist_ok=True)
        clock.now = float(when)
        t.sampler.sample_once()
    return t, clock


def test_trends_fire_on_the_recorded_step_to_busy_cpus(tmp_path: Path) -> None:
    t, _ = replay_step(tmp_path)
    trends = t.trends(window_s=5.0, baseline_s=5.0, sections={"cpu", "sched", "psi"})
    assert trends.shift_detected
    by_metric = {s.metric: s for s in trends.shifts}
    util = by_metric["cpu.total.util_pct"]
    assert util.direction == "up" and util.magnitude > 80
    trend = trends.metrics["cpu.total.util_pct"]
    # the baseline holds the idle intervals and the ramp (one interval at 41%, one at 100%)
    assert trend.baseline_mean is not None and trend.baseline_mean < 30 and trend.current_mean > 95


def test_trends_stay_quiet_across_the_idle_part_of_the_recording(tmp_path: Path) -> None:
    t, _ = replay_step(tmp_path)
    # only the idle half: drop the busy samples
    idle = [s for s in t.sampler.samples()][:11]
    quiet = Telemetry(t.root, interval_s=0.5, clock=t.clock)
    for s in idle:
        quiet.sampler.push(s)
    trends = quiet.trends(window_s=2.5, baseline_s=2.5, sections={"cpu"})
    assert not any(s.metric.startswith("cpu.total") for s in trends.shifts)


def test_two_hundred_noise_trials_raise_no_false_shift() -> None:
    rng = random.Random(20261124)
    rule = ShiftRule()
    false_positives = 0
    for _ in range(200):
        level = rng.uniform(1, 1000)
        sd = level * rng.uniform(0.01, 0.3)
        points = [(float(i), rng.gauss(level, sd)) for i in range(40)]
        _, shifts = compute_trends({"noise": points}, split_t=29.5, rule=rule)
        false_positives += len(shifts)
    assert false_positives == 0


def test_a_synthetic_step_of_five_sd_is_found_in_every_trial() -> None:
    rng = random.Random(7)
    for _ in range(50):
        base = [(float(i), rng.gauss(100, 2)) for i in range(30)]
        cur = [(float(30 + i), rng.gauss(120, 2)) for i in range(10)]
        _, shifts = compute_trends({"x": base + cur}, split_t=29.5, rule=ShiftRule())
        assert [s["direction"] for s in shifts] == ["up"]


def test_trend_reports_delta_slope_and_ewma() -> None:
    points = [(float(i), 10.0) for i in range(5)] + [(float(5 + i), 20.0 + i) for i in range(5)]
    metrics, shifts = compute_trends({"m": points}, split_t=4.5, rule=ShiftRule())
    m = metrics["m"]
    assert m["baseline_mean"] == 10.0 and m["current_mean"] == 22.0
    assert m["delta_pct"] == pytest.approx(120.0)
    assert m["slope_per_s"] == pytest.approx(1.0)
    assert 10.0 < m["ewma"] <= 24.0
    assert shifts and shifts[0]["metric"] == "m"


def test_trends_need_two_samples(fake: FakeKernel) -> None:
    t = Telemetry(fake.root, clock=FakeClock())
    with pytest.raises(TelemetryNotReadyError):
        t.trends(5, 5)


# --------------------------------------------------------------------------- running and fresh_signature
@pytest.mark.anyio
async def test_fresh_signature_waits_for_a_new_window_and_reports_progress(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    t = Telemetry(fake.root, interval_s=0.02)
    seen: list[tuple[float, float, str]] = []

    async def progress(done: float, total: float, message: str) -> None:
        seen.append((done, total, message))

    with anyio.fail_after(20):
        async with t.running():
            before = t.clock()
            sig = await t.fresh_signature(0.1, progress=progress, sections={"cpu"})
    assert sig.covered_s >= 0.1 - 0.002
    assert sig.start_unix_s > 0 and sig.samples_used >= 2
    assert min(s.t for s in t.sampler.samples()[-sig.samples_used :]) >= before
    assert seen[-1][0] == seen[-1][1] == 0.1
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)


@pytest.mark.anyio
async def test_fresh_signature_outside_running_is_not_ready(fake: FakeKernel) -> None:
    t = Telemetry(fake.root)
    with pytest.raises(TelemetryNotReadyError):
        await t.fresh_signature(1.0)


FAKE_PERF = f"""#!{sys.executable}
import sys, time
try:
    k = 0
    while True:
        k += 1
        print(f"{{k * 0.02:.6f}},5,,context-switches,1,100.00,,", file=sys.stderr, flush=True)
        time.sleep(0.02)
except KeyboardInterrupt:
    pass
"""


@pytest.mark.anyio
async def test_running_starts_and_stops_sampler_and_perf(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path / "k", "6.18")
    perf_bin = tmp_path / "perf"
    perf_bin.write_text(FAKE_PERF)
    perf_bin.chmod(0o755)
    perf = PerfStat(interval_ms=20, events=("context-switches",), perf_path=str(perf_bin))
    t = Telemetry(fake.root, interval_s=0.02, perf=perf)
    with anyio.fail_after(20):
        async with t.running():
            assert perf.running
            sig = await t.fresh_signature(0.1)
            with pytest.raises(InvalidTelemetryRequestError):
                async with t.running():
                    pass
    assert not perf.running
    assert sig.perf is not None and sig.perf.context_switches_per_s == pytest.approx(250.0)
    count = len(t.sampler.samples())
    await anyio.sleep(0.05)
    assert len(t.sampler.samples()) == count
