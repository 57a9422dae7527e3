from __future__ import annotations

import math
import os
import time
from pathlib import Path

import psutil
import pytest

from lumos_mcp.arena import workloads
from lumos_mcp.arena.workloads import (
    ArenaCgroups,
    BatchWorkload,
    NeighbourWorkload,
    NoiseReport,
    PgbenchWorkload,
    ProbeWorkload,
    noise_cpu,
    parse_eps_line,
    require,
    requirements,
)
from lumos_mcp.errors import ToolMissingError, WorkloadError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.cgroups import CgroupManager
from lumos_mcp.kernelfs.fake import FakeKernel

LIVE_OK = os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup/cpu")


def _children_of_this_test() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def test_requirements_name_every_tool_and_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workloads, "find_tool", lambda name: None if name in ("sysbench", "pgbench") else "/x")
    req = requirements()
    assert {t.name for t in req.missing} == {"sysbench", "pgbench"}
    assert req.install_command == "apt-get install -y postgresql sysbench"
    assert req.as_dict()["workloads"] == {"probe": True, "pgbench": False, "batch": True, "neighbour": True}


def test_a_missing_tool_is_a_typed_error_carrying_its_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workloads, "find_tool", lambda name: None)
    with pytest.raises(ToolMissingError) as info:
        require("stress-ng", "batch")
    assert info.value.fields["install"] == "apt-get install -y stress-ng"
    with pytest.raises(ToolMissingError):
        PgbenchWorkload().start()
    with pytest.raises(ToolMissingError):
        BatchWorkload(backend="sysbench")
    assert BatchWorkload().backend == "builtin"


def test_sysbench_report_lines_are_parsed_and_others_ignored() -> None:
    assert parse_eps_line("[ 5s ] thds: 2 eps: 8912.34 lat (ms,95%): 0.23") == (5.0, 8912.34)
    assert parse_eps_line("[ 12s ] thds: 2 eps: 1.00") == (12.0, 1.0)
    assert parse_eps_line("Threads started!") is None
    assert parse_eps_line("    events per second:  8701.73") is None


def test_noise_is_host_cpu_minus_the_arena_groups(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path / "k").cgroup_v1_hierarchies(cpu_usage_ns="1000000000")
    cg = CgroupManager(fake.root)
    cg.create("lumos-arena/batch")
    with noise_cpu(cg, ["lumos-arena"], exclude_pids=[]) as window:
        fake.file("sys/fs/cgroup/cpuacct/cpuacct.usage", str(1_000_000_000 + 3_000_000_000))
        fake.file("sys/fs/cgroup/cpuacct/lumos-arena/cpuacct.usage", "2500000000")
    r = window.report
    assert r.host_cpu_s == pytest.approx(3.0)
    assert r.arena_cpu_s == pytest.approx(2.5)
    assert r.noise_cpu_s == pytest.approx(0.5)


def test_a_window_reports_only_after_it_ends(tmp_path: Path) -> None:
    cg = CgroupManager(FakeKernel(tmp_path / "k").cgroup_v1_hierarchies().root)
    with noise_cpu(cg, [], exclude_pids=[]) as window, pytest.raises(RuntimeError):
        _ = window.report


def test_noisy_means_more_than_the_threshold_in_cpus() -> None:
    r = NoiseReport(window_s=10, host_cpu_s=5, arena_cpu_s=4, noise_cpu_s=1)
    assert r.noise_cpus == pytest.approx(0.1)
    assert not r.noisy(0.1) and r.noisy(0.05)


def test_arena_cgroups_are_made_and_removed_even_when_the_body_raises(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path / "k").cgroup_v1_hierarchies()
    cg = CgroupManager(fake.root)
    with pytest.raises(KeyError), ArenaCgroups(cg, ["victim", "batch"]) as groups:
        assert cg.exists(groups["victim"]) and cg.exists("lumos-arena/batch")
        cg.attach(groups["batch"], 1234)
        raise KeyError("boom")
    assert not cg.exists("lumos-arena")
    assert "1234" in fake.read("sys/fs/cgroup/cpu/cgroup.procs").split()


def test_measuring_a_stopped_probe_is_a_typed_error() -> None:
    with pytest.raises(WorkloadError):
        ProbeWorkload().measure(1.0)


def test_workloads_leave_no_process_when_the_body_raises() -> None:
    with pytest.raises(ZeroDivisionError), ProbeWorkload(), NeighbourWorkload(0.2):
        assert len(_children_of_this_test()) >= 2
        _ = 1 / 0
    assert _children_of_this_test() == []


@pytest.mark.slow
def test_builtin_batch_reports_events_per_second() -> None:
    with BatchWorkload(threads=1, backend="builtin") as batch:
        eps = batch.measure(2.5)
        assert math.isnan(batch.events_per_s(batch.mark() + 10**12))  # no interval in a future window
    assert eps > 0 and not math.isnan(eps)
    assert _children_of_this_test() == []


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(
    not LIVE_OK or not requirements().workload_ok("pgbench"), reason="needs root, cgroup v1, PostgreSQL"
)
def test_live_pgbench_and_batch_in_sibling_cgroups_then_everything_is_gone() -> None:
    cg = CgroupManager(KernelRoot("/"))
    with ArenaCgroups(cg, ["pg", "batch"], parent=f"lumos-test-{os.getpid()}") as groups:
        with (
            PgbenchWorkload(rate_tps=300, scale=1, cgroup=groups["pg"], cgroups=cg) as pg,
            BatchWorkload(2, cgroup=groups["batch"], cgroups=cg) as batch,
        ):
            assert pg.server_pid in cg.pids(groups["pg"])
            assert batch.pid in cg.pids(groups["batch"])
            mark = batch.mark()
            tail = pg.measure(2.0)
            time.sleep(0.2)
            eps = batch.events_per_s(mark)
            assert cg.usage_ns(groups["batch"]) > 0
        assert tail.count > 0 and tail.p99_us > 0 and tail.throughput is not None
        assert eps > 0
        assert cg.pids(groups["pg"]) == [] and cg.pids(groups["batch"]) == []
    assert not cg.exists(groups.parent)
    assert _children_of_this_test() == []
