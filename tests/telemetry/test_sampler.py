from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest
from telemetry_helpers import FakeClock, recorded_tree

from lumos_mcp.errors import InvalidTelemetryRequestError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.telemetry import Sampler, Snapshot, interval_metrics, read_snapshot, sections_between

STAT = (
    "cpu  {u} 0 {s} {i} {w} 0 0 0 0 0\ncpu0 {u} 0 {s} {i} {w} 0 0 0 0 0\n"
    "ctxt {c}\nprocesses {p}\nprocs_running 2\nprocs_blocked 0\n"
)


def write_stat(fake: FakeKernel, user: int, system: int, idle: int, iowait: int, ctxt: int, processes: int) -> None:
    fake.file("proc/stat", STAT.format(u=user, s=system, i=idle, w=iowait, c=ctxt, p=processes))


def test_rates_use_the_snapshots_own_timestamps(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    clock = FakeClock()
    sampler = Sampler(fake.root, clock=clock)
    write_stat(fake, user=100, system=50, idle=850, iowait=0, ctxt=1000, processes=10)
    sampler.sample_once()
    clock.advance(2.0)
    write_stat(fake, user=160, system=70, idle=1010, iowait=10, ctxt=5000, processes=30)
    sampler.sample_once()
    rates = sampler.rates()
    # 250 ticks elapsed: 60 user, 20 system, 160 idle, 10 iowait
    assert rates["cpu.total.util_pct"] == pytest.approx(100 * 80 / 250)
    assert rates["cpu.total.user_pct"] == pytest.approx(24.0)
    assert rates["cpu.total.iowait_pct"] == pytest.approx(4.0)
    assert rates["cpu.per_core.cpu0.util_pct"] == pytest.approx(32.0)
    assert rates["sched.ctx_switches_per_s"] == pytest.approx(2000.0)
    assert rates["sched.forks_per_s"] == pytest.approx(10.0)


def test_counter_that_went_backwards_gives_no_rate_rather_than_a_negative_one(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    write_stat(fake, 100, 50, 850, 0, ctxt=1000, processes=10)
    a = read_snapshot(fake.root, 1.0, 1.0)
    write_stat(fake, 160, 70, 1010, 10, ctxt=10, processes=30)
    b = read_snapshot(fake.root, 2.0, 2.0)
    assert "sched.ctx_switches_per_s" not in interval_metrics(a, b)


def test_every_section_has_rates_between_two_recorded_snapshots(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "5.15")
    a = read_snapshot(fake.root, 10.0, 10.0, cgroups=())
    for rel, old, new in [
        ("proc/vmstat", "pgfault 3456789012", "pgfault 3456799012"),
        ("proc/net/snmp", "87654321 76543210 12345", "87655321 76544210 12355"),
        ("proc/pressure/io", "total=4567890123", "total=4568390123"),
        ("proc/schedstat", "95123456789 42123456", "95623456789 42124456"),
    ]:
        path = tmp_path / rel
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    b = read_snapshot(fake.root, 12.0, 12.0)
    m = interval_metrics(a, b)
    assert m["memory.page_faults_per_s"] == pytest.approx(5000.0)
    assert m["network.tcp.retransmits_per_s"] == pytest.approx(5.0)
    assert m["network.tcp.retransmit_pct"] == pytest.approx(1.0)
    assert m["psi.io.some.window_pct"] == pytest.approx(25.0)
    assert m["sched.run_delay_ms_per_s"] == pytest.approx(250.0)
    assert m["sched.run_delay_us_per_timeslice"] == pytest.approx(500.0)
    assert m["io.nvme0n1.reads_per_s"] == 0.0
    assert m["memory.available_mib"] == pytest.approx(11234560 / 1024)


def test_missing_sources_become_reasons_not_zeros(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "4.19-nopsi")
    data, unavailable = sections_between(read_snapshot(fake.root, 1.0, 1.0), read_snapshot(fake.root, 2.0, 2.0))
    assert data["psi"] is None and "psi" in unavailable
    assert data["sched"]["run_delay_ms_per_s"] is None and "sched.run_delay" in unavailable
    assert data["memory"]["direct_reclaim_scan_pages_per_s"] == 0.0
    assert data["memory"]["thp_fault_fallbacks_per_s"] == 0.0
    assert "memory.oom_kills_per_s" not in unavailable


def test_cgroup_usage_and_throttling_rates(fake: FakeKernel) -> None:
    clock = FakeClock()
    sampler = Sampler(fake.root, clock=clock, cgroups=("batch",))
    fake.file("sys/fs/cgroup/cpu/batch/cpu.stat", "nr_periods 100\nnr_throttled 10\nthrottled_time 0\n")
    fake.file("sys/fs/cgroup/cpu/batch/cpuacct.usage", "0")
    sampler.sample_once()
    clock.advance(4.0)
    fake.file("sys/fs/cgroup/cpu/batch/cpu.stat", "nr_periods 140\nnr_throttled 30\nthrottled_time 800000000\n")
    fake.file("sys/fs/cgroup/cpu/batch/cpuacct.usage", "6000000000")
    sampler.sample_once()
    r = sampler.rates()
    assert r["cgroups.batch.cpu_usage_cores"] == pytest.approx(1.5)
    assert r["cgroups.batch.throttled_periods_per_s"] == pytest.approx(5.0)
    assert r["cgroups.batch.throttled_ms_per_s"] == pytest.approx(200.0)
    assert r["cgroups.batch.throttled_pct"] == pytest.approx(50.0)


def test_ring_buffer_keeps_only_the_newest_capacity_samples(fake: FakeKernel) -> None:
    clock = FakeClock()
    sampler = Sampler(fake.root, clock=clock, capacity=3)
    for _ in range(5):
        clock.advance(1.0)
        sampler.sample_once()
    assert [s.t for s in sampler.samples()] == [1003.0, 1004.0, 1005.0]
    assert [s.t for s in sampler.samples(since=1004.0)] == [1004.0, 1005.0]
    assert [s.t for s in sampler.window(1.0)] == [1004.0, 1005.0]


def test_a_window_of_one_interval_keeps_two_samples_when_the_sampler_runs_late(fake: FakeKernel) -> None:
    clock = FakeClock()
    sampler = Sampler(fake.root, clock=clock)
    for step in (1.0, 1.0, 1.03):  # the real sampler wakes a few ms late
        clock.advance(step)
        sampler.sample_once()
    assert [s.t for s in sampler.window(1.0)] == [1002.0, 1003.03]


def test_a_snapshot_not_later_than_the_newest_is_refused(fake: FakeKernel) -> None:
    sampler = Sampler(fake.root, clock=FakeClock())
    sampler.sample_once()
    with pytest.raises(InvalidTelemetryRequestError):
        sampler.sample_once()


@pytest.mark.parametrize(("interval_s", "capacity"), [(0.0, 10), (-1.0, 10), (1.0, 1)])
def test_bad_sampler_settings_are_refused(fake: FakeKernel, interval_s: float, capacity: int) -> None:
    with pytest.raises(InvalidTelemetryRequestError):
        Sampler(fake.root, interval_s=interval_s, capacity=capacity)


@pytest.mark.anyio
async def test_run_fills_the_buffer_reading_in_a_worker_thread(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    sampler = Sampler(fake.root, interval_s=0.01)
    loop_thread = threading.get_ident()
    readers: set[int] = set()
    original = sampler.read

    def spying_read() -> Snapshot:
        readers.add(threading.get_ident())
        return original()

    sampler.read = spying_read  # type: ignore[method-assign]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sampler.run)
            first = await sampler.wait_for_sample(after_t=float("-inf"))
            third = first
            for _ in range(2):
                third = await sampler.wait_for_sample(after_t=third.t)
            tg.cancel_scope.cancel()
    assert len(sampler.samples()) >= 3
    assert loop_thread not in readers


@pytest.mark.anyio
async def test_run_survives_a_clock_that_does_not_advance(fake: FakeKernel) -> None:
    sampler = Sampler(fake.root, interval_s=0.01, clock=FakeClock())
    sampler.sample_once()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sampler.run)
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert len(sampler.samples()) == 1
