from __future__ import annotations

from pathlib import Path

import pytest
from telemetry_helpers import recorded_tree

from lumos_mcp.errors import InvalidParameterError, KnobUnavailableError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.telemetry import read_cgroup_cpu, read_diskstats, read_pressure, read_schedstat, read_snapshot


def test_this_machine_has_every_source_but_schedstat(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    snap = read_snapshot(fake.root, t=1.0, wall=2.0)
    assert snap.schedstat is None
    assert "CONFIG_SCHEDSTATS" in snap.missing["schedstat"]
    assert set(snap.missing) == {"schedstat"}
    assert set(snap.pressure) == {"cpu", "memory", "io"}
    assert snap.stat is not None and snap.vmstat is not None and snap.snmp is not None


def test_a_kernel_without_psi_reports_pressure_missing_not_zero(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "4.19-nopsi")
    snap = read_snapshot(fake.root, t=1.0, wall=2.0)
    assert snap.pressure == {}
    assert {"pressure/cpu", "pressure/memory", "pressure/io", "schedstat"} <= set(snap.missing)
    assert "PSI" in snap.missing["pressure/cpu"]


def test_a_5_15_kernel_with_schedstats_gives_run_delay(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "5.15")
    snap = read_snapshot(fake.root, t=1.0, wall=2.0)
    assert snap.missing == {}
    assert snap.schedstat is not None and len(snap.schedstat.cpus) == 4


def test_readers_raise_the_roots_typed_error_for_an_absent_file(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "4.19-nopsi")
    with pytest.raises(KnobUnavailableError):
        read_schedstat(fake.root)
    with pytest.raises(KnobUnavailableError):
        read_pressure(fake.root, "cpu")


def test_pressure_reader_refuses_an_unknown_resource(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    with pytest.raises(InvalidParameterError):
        read_pressure(fake.root, "../stat")


def test_diskstats_keep_whole_disks_when_sys_block_lists_them(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "5.15")
    assert "nvme0n1p1" in read_diskstats(fake.root)
    for dev in ("nvme0n1", "sda", "dm-0"):
        (tmp_path / "sys" / "block" / dev).mkdir(parents=True)
    assert set(read_diskstats(fake.root)) == {"nvme0n1", "sda", "dm-0"}


def test_cgroup_v1_group_reads_cpu_stat_and_cpuacct_usage(fake: FakeKernel) -> None:
    fake.file("sys/fs/cgroup/cpu/batch/cpu.stat", "nr_periods 10\nnr_throttled 4\nthrottled_time 2000000\n")
    fake.file("sys/fs/cgroup/cpuacct/batch/cpuacct.usage", "123456789")
    g = read_cgroup_cpu(fake.root, "batch")
    assert (g.version, g.usage_ns, g.nr_periods, g.nr_throttled, g.throttled_ns) == (1, 123456789, 10, 4, 2000000)


def test_cgroup_v1_falls_back_to_cpuacct_usage_in_the_cpu_hierarchy(fake: FakeKernel) -> None:
    fake.file("sys/fs/cgroup/cpu/batch/cpuacct.usage", "42")
    assert read_cgroup_cpu(fake.root, "batch").usage_ns == 42


def test_cgroup_v2_group_is_found_when_the_root_is_cgroup2(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path).cgroup_v2("app.slice/pg")
    fake.file(
        "sys/fs/cgroup/app.slice/pg/cpu.stat", "usage_usec 2000\nnr_periods 5\nnr_throttled 1\nthrottled_usec 30\n"
    )
    g = read_cgroup_cpu(fake.root, "app.slice/pg")
    assert (g.version, g.usage_ns, g.nr_throttled, g.throttled_ns) == (2, 2_000_000, 1, 30_000)


def test_hybrid_unified_group_gives_usage_without_throttling(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    fake.file("sys/fs/cgroup/unified/probe/cpu.stat", "usage_usec 10\nuser_usec 5\nsystem_usec 5\nnice_usec 0\n")
    g = read_cgroup_cpu(fake.root, "probe")
    assert g.version == 2 and g.usage_ns == 10_000 and g.nr_throttled is None


def test_an_absent_cgroup_is_missing_in_the_snapshot(fake: FakeKernel) -> None:
    snap = read_snapshot(fake.root, 1.0, 1.0, cgroups=("nope",))
    assert snap.cgroups == {}
    assert snap.missing["cgroup/nope"].startswith("not_on_this_kernel")


@pytest.mark.parametrize("name", ["../etc", "a/../b", "", "/abs", "a//b", "x y", "."])
def test_cgroup_names_that_could_escape_are_refused_before_any_read(fake: FakeKernel, name: str) -> None:
    with pytest.raises(InvalidParameterError):
        read_snapshot(fake.root, 1.0, 1.0, cgroups=(name,))
