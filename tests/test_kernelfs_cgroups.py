from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumos_mcp.errors import CgroupError, InvalidParameterError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.cgroups import CgroupManager, parse_cpu_stat_usage_ns
from lumos_mcp.kernelfs.fake import FakeKernel


@pytest.fixture
def v1(tmp_path: Path) -> FakeKernel:
    return FakeKernel(tmp_path / "k").cgroup_v1_hierarchies(cpu_usage_ns="5000")


@pytest.fixture
def v2(tmp_path: Path) -> FakeKernel:
    return FakeKernel(tmp_path / "k2").cgroup_v2_hierarchy(usage_usec="7")


def test_v1_is_detected_from_the_cpu_hierarchy_and_cpuacct_is_used_too(v1: FakeKernel) -> None:
    cg = CgroupManager(v1.root)
    assert cg.version == 1
    assert cg.hierarchies == ["sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuacct"]


def test_v2_is_detected_when_the_root_lists_the_cpu_controller(v2: FakeKernel) -> None:
    assert CgroupManager(v2.root).version == 2


def test_a_host_without_a_cpu_controller_is_a_typed_error(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path / "k").cgroup_v2_hierarchy(controllers="memory pids")
    with pytest.raises(CgroupError):
        CgroupManager(fake.root)


@pytest.mark.parametrize(
    "name", ["", "/abs", "../up", "a/../b", "a//b", ".hidden", "a/b/c/d/e", "x" * 65, "sp ace", "a/", "a\x00"]
)
def test_bad_names_are_refused_before_any_write(v1: FakeKernel, name: str) -> None:
    cg = CgroupManager(v1.root)
    with pytest.raises(InvalidParameterError):
        cg.create(name)
    assert v1.root.listdir("sys/fs/cgroup/cpu") == ["cgroup.procs", "cpu.shares"]


def test_create_makes_nested_groups_in_both_v1_hierarchies(v1: FakeKernel) -> None:
    cg = CgroupManager(v1.root)
    assert cg.create("lumos-arena/batch") == "sys/fs/cgroup/cpu/lumos-arena/batch"
    assert v1.read("sys/fs/cgroup/cpu/lumos-arena/batch/cpu.shares").strip() == "1024"
    assert v1.root.exists("sys/fs/cgroup/cpuacct/lumos-arena/batch/cpuacct.usage")
    cg.create("lumos-arena/batch")  # idempotent
    assert cg.exists("lumos-arena/batch")


def test_attach_moves_the_pid_out_of_its_previous_group(v1: FakeKernel) -> None:
    cg = CgroupManager(v1.root)
    cg.create("arena/a")
    cg.create("arena/b")
    cg.attach("arena/a", 4242)
    cg.attach("arena/b", 4242)
    assert cg.pids("arena/a") == []
    assert cg.pids("arena/b") == [4242]
    assert v1.read("sys/fs/cgroup/cpuacct/arena/b/cgroup.procs").split() == ["4242"]


def test_attach_to_a_missing_group_says_create_first(v1: FakeKernel) -> None:
    with pytest.raises(CgroupError) as info:
        CgroupManager(v1.root).attach("nope", 1)
    assert info.value.fields["cgroup"] == "nope"


def test_usage_reads_cpuacct_on_v1_and_cpu_stat_on_v2(v1: FakeKernel, v2: FakeKernel) -> None:
    one = CgroupManager(v1.root)
    one.create("g")
    v1.file("sys/fs/cgroup/cpuacct/g/cpuacct.usage", "123456789")
    assert one.usage_ns("g") == 123456789
    assert one.usage_ns() == 5000
    two = CgroupManager(v2.root)
    two.create("g")
    v2.file("sys/fs/cgroup/g/cpu.stat", "usage_usec 42\nuser_usec 40\n")
    assert two.usage_ns("g") == 42000
    assert two.usage_ns() == 7000


def test_v2_create_enables_cpu_in_every_ancestor(v2: FakeKernel) -> None:
    CgroupManager(v2.root).create("arena/batch")
    assert v2.read("sys/fs/cgroup/cgroup.subtree_control").strip() == "+cpu"
    assert v2.read("sys/fs/cgroup/arena/cgroup.subtree_control").strip() == "+cpu"
    assert v2.read("sys/fs/cgroup/arena/batch/cgroup.subtree_control").strip() == ""


def test_remove_moves_pids_to_the_parent_removes_children_and_is_idempotent(v1: FakeKernel) -> None:
    cg = CgroupManager(v1.root)
    cg.create("arena/batch")
    cg.attach("arena/batch", 77)
    cg.attach("arena", 78)
    cg.remove("arena")
    assert not cg.exists("arena")
    assert not v1.root.exists("sys/fs/cgroup/cpuacct/arena")
    assert sorted(int(p) for p in v1.read("sys/fs/cgroup/cpu/cgroup.procs").split()) == [77, 78]
    cg.remove("arena")


def test_remove_on_v2_moves_pids_to_the_root(v2: FakeKernel) -> None:
    cg = CgroupManager(v2.root)
    cg.create("arena/batch")
    cg.attach("arena/batch", 9)
    cg.remove("arena/batch")
    assert v2.read("sys/fs/cgroup/cgroup.procs").split() == ["9"]
    assert cg.exists("arena")


def test_cpu_stat_without_usage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_cpu_stat_usage_ns("nr_periods 0\n")


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/cpu"), reason="needs root and cgroup v1")
def test_live_create_attach_read_usage_and_remove() -> None:
    cg = CgroupManager(KernelRoot("/"))
    name = f"lumos-test-{os.getpid()}/child"
    child = subprocess.Popen([sys.executable, "-c", "import time\nfor _ in range(3000000): pass\ntime.sleep(30)"])
    try:
        cg.create(name)
        cg.attach(name, child.pid)
        assert child.pid in cg.pids(name)
        assert cg.usage_ns(name) >= 0
        cg.remove(name.split("/")[0])
        assert not cg.exists(name.split("/")[0])
        assert child.poll() is None  # moved out, not killed
    finally:
        child.kill()
        child.wait(timeout=10)
        cg.remove(name.split("/")[0])
