from __future__ import annotations

from pathlib import Path

import pytest

from lumos_mcp.errors import TelemetryParseError
from lumos_mcp.telemetry.parsers import (
    parse_cgroup_v1_cpu,
    parse_cgroup_v2_cpu,
    parse_diskstats,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
    parse_pressure,
    parse_schedstat,
    parse_snmp,
    parse_stat,
    parse_vmstat,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "proc"
KERNELS = ["6.18", "5.15", "4.19-nopsi"]


def text(kernel: str, rel: str) -> str:
    return (DATA / kernel / rel).read_text()


@pytest.mark.parametrize("kernel", KERNELS)
def test_stat_parses_total_and_every_cpu_line_of_each_kernel(kernel: str) -> None:
    stat = parse_stat(text(kernel, "stat"))
    assert stat.per_cpu
    assert sorted(stat.per_cpu) == list(range(len(stat.per_cpu)))
    assert stat.total.total > 0
    # the aggregate line is the sum of the per-CPU lines (the kernel sums them the same way)
    assert stat.total.user == pytest.approx(sum(c.user for c in stat.per_cpu.values()), abs=len(stat.per_cpu))
    assert stat.ctxt > 0 and stat.processes > 0


def test_stat_reads_this_machines_scalars() -> None:
    stat = parse_stat(text("6.18", "stat"))
    assert len(stat.per_cpu) == 2
    assert stat.procs_running >= 1
    assert stat.btime is not None


def test_stat_without_ctxt_is_a_parse_error() -> None:
    with pytest.raises(TelemetryParseError) as info:
        parse_stat("cpu  1 2 3 4 5 6 7 8 0 0\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n")
    assert info.value.fields["source"] == "proc/stat"


def test_stat_accepts_old_four_field_cpu_lines() -> None:
    stat = parse_stat("cpu 10 0 5 85\ncpu0 10 0 5 85\nctxt 1\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n")
    assert stat.total.total == 100 and stat.total.steal == 0


def test_schedstat_v15_gives_per_cpu_run_delay_and_timeslices() -> None:
    s = parse_schedstat(text("5.15", "schedstat"))
    assert s.version == 15
    assert [c.cpu for c in s.cpus] == [0, 1, 2, 3]
    assert s.cpus[0].run_delay_ns == 95123456789
    assert s.cpus[0].timeslices == 42123456
    assert s.run_delay_ns == sum(c.run_delay_ns for c in s.cpus)


def test_schedstat_older_than_v15_is_refused_rather_than_misread() -> None:
    with pytest.raises(TelemetryParseError):
        parse_schedstat("version 14\ntimestamp 1\ncpu0 0 0 0 0 0 0 0 1 2 3 4 5\n")


def test_schedstat_v17_cpu_line_reads_the_same_fields() -> None:
    s = parse_schedstat("version 17\ntimestamp 99\ncpu0 0 0 10 5 8 3 1000 200 7\ndomain0 MC 03 1 2 3\n")
    assert (s.cpus[0].running_ns, s.cpus[0].run_delay_ns, s.cpus[0].timeslices) == (1000, 200, 7)


@pytest.mark.parametrize("kernel", ["6.18", "5.15"])
@pytest.mark.parametrize("resource", ["cpu", "memory", "io"])
def test_pressure_parses_some_and_full(kernel: str, resource: str) -> None:
    p = parse_pressure(text(kernel, f"pressure/{resource}"), resource)
    assert p.some.avg10 >= 0 and p.some.total_us >= 0
    assert p.full is not None


def test_pressure_values_are_read_exactly() -> None:
    p = parse_pressure(text("5.15", "pressure/io"), "io")
    assert (p.some.avg10, p.some.avg60, p.some.avg300, p.some.total_us) == (3.10, 2.05, 1.50, 4567890123)
    assert p.full is not None and p.full.avg10 == 2.20


def test_cpu_pressure_before_5_13_has_no_full_line() -> None:
    p = parse_pressure("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n")
    assert p.full is None and p.some.total_us == 4


def test_pressure_line_without_total_is_a_parse_error() -> None:
    with pytest.raises(TelemetryParseError):
        parse_pressure("some avg10=1.00 avg60=2.00 avg300=3.00\n")


@pytest.mark.parametrize("kernel", KERNELS)
def test_vmstat_keeps_fault_swap_and_reclaim_counters(kernel: str) -> None:
    vm = parse_vmstat(text(kernel, "vmstat"))
    for name in ("pgfault", "pgmajfault", "pswpin", "pswpout", "pgscan_kswapd", "pgsteal_kswapd", "compact_stall"):
        assert vm.get(name) is not None, name
    assert vm.pgscan is not None and vm.pgsteal is not None


def test_vmstat_scan_total_sums_reclaimers_not_the_anon_file_split() -> None:
    vm = parse_vmstat(text("5.15", "vmstat"))
    assert vm.pgscan == 3456789 + 45678 + 0
    assert vm.allocstall == 37 + 112
    assert vm.get("pgscan_anon") is None


def test_vmstat_does_not_invent_counters_an_old_kernel_lacks() -> None:
    vm = parse_vmstat(text("4.19-nopsi", "vmstat"))
    assert vm.get("pgscan_khugepaged") is None
    assert vm.get("workingset_refault_file") is None
    assert vm.get("workingset_refault") == 3456


@pytest.mark.parametrize("kernel", KERNELS)
def test_meminfo_reads_total_free_available_in_kib(kernel: str) -> None:
    m = parse_meminfo(text(kernel, "meminfo"))
    assert m.total_kib > m.free_kib > 0
    assert m.available_kib is not None and m.available_kib <= m.total_kib


def test_meminfo_without_memavailable_says_none() -> None:
    m = parse_meminfo("MemTotal: 100 kB\nMemFree: 50 kB\n")
    assert m.available_kib is None


@pytest.mark.parametrize("kernel", KERNELS)
def test_loadavg_parses(kernel: str) -> None:
    la = parse_loadavg(text(kernel, "loadavg"))
    assert la.load1 >= 0 and la.threads >= la.runnable >= 0


def test_loadavg_of_another_shape_is_a_parse_error() -> None:
    with pytest.raises(TelemetryParseError):
        parse_loadavg("0.1 0.2\n")


@pytest.mark.parametrize(
    ("kernel", "devices"),
    [
        ("6.18", {"vda", "zram0"}),
        ("5.15", {"nvme0n1", "nvme0n1p1", "nvme0n1p2", "sda", "dm-0"}),
        ("4.19-nopsi", {"sda", "sda1"}),
    ],
)
def test_diskstats_skip_loop_and_ram_devices(kernel: str, devices: set[str]) -> None:
    assert set(parse_diskstats(text(kernel, "diskstats"))) == devices


def test_diskstats_fields_are_in_kernel_order() -> None:
    vda = parse_diskstats(text("6.18", "diskstats"))["vda"]
    assert (vda.reads, vda.sectors_read, vda.writes, vda.io_time_ms) == (38856, 2511906, 5697, 5808)


def test_diskstats_short_line_is_a_parse_error() -> None:
    with pytest.raises(TelemetryParseError):
        parse_diskstats("8 0 sda 1 2 3\n")


@pytest.mark.parametrize("kernel", KERNELS)
def test_net_dev_parses_every_interface(kernel: str) -> None:
    devs = parse_net_dev(text(kernel, "net/dev"))
    assert "lo" in devs
    assert all(d.rx_bytes >= 0 and d.tx_packets >= 0 for d in devs.values())


def test_net_dev_splits_receive_and_transmit_columns() -> None:
    eth = parse_net_dev(text("5.15", "net/dev"))["enp3s0"]
    assert (eth.rx_bytes, eth.rx_packets, eth.rx_errors, eth.rx_drops) == (123456789012, 98765432, 2, 15)
    assert (eth.tx_bytes, eth.tx_packets, eth.tx_drops) == (23456789012, 45678901, 3)


@pytest.mark.parametrize("kernel", KERNELS)
def test_snmp_reads_tcp_retransmits_and_udp_errors(kernel: str) -> None:
    snmp = parse_snmp(text(kernel, "net/snmp"))
    assert {"InSegs", "OutSegs", "RetransSegs"} <= set(snmp.tcp)
    assert "InErrors" in snmp.udp
    assert "RtoMin" not in snmp.tcp


def test_snmp_values_line_of_the_wrong_length_is_a_parse_error() -> None:
    with pytest.raises(TelemetryParseError):
        parse_snmp("Tcp: InSegs OutSegs\nTcp: 1\n")


def test_cgroup_v1_stat_as_read_on_this_machine_normalises_to_ns() -> None:
    real = "nr_periods 12\nnr_throttled 3\nthrottled_time 4500000\nnr_bursts 0\nburst_time 0\n"
    g = parse_cgroup_v1_cpu("batch", real, "71126969499\n")
    assert (g.version, g.usage_ns, g.nr_periods, g.nr_throttled, g.throttled_ns) == (1, 71126969499, 12, 3, 4500000)


def test_cgroup_v2_usec_counters_become_ns_and_absent_ones_stay_none() -> None:
    unified = "usage_usec 55282571\nuser_usec 37673376\nsystem_usec 17609195\nnice_usec 0\n"
    g = parse_cgroup_v2_cpu("probe", unified)
    assert g.usage_ns == 55282571000
    assert g.nr_throttled is None and g.throttled_ns is None
    full = parse_cgroup_v2_cpu("x", "usage_usec 5\nnr_periods 4\nnr_throttled 2\nthrottled_usec 7\n")
    assert (full.nr_periods, full.nr_throttled, full.throttled_ns) == (4, 2, 7000)
