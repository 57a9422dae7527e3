from __future__ import annotations

import pytest

from lumos_mcp.errors import (
    InvalidValueError,
    KnobLockedError,
    KnobUnavailableError,
    PathEscapeError,
)
from lumos_mcp.kernelfs import KernelRoot, parse_release
from lumos_mcp.kernelfs.fake import FakeKernel


@pytest.mark.parametrize(
    ("text", "version"),
    [("6.18.44-fc-v669\n", (6, 18, 44)), ("5.15.0-91-generic", (5, 15, 0)), ("4.19", (4, 19, 0))],
)
def test_parse_release_reads_major_minor_patch(text: str, version: tuple[int, int, int]) -> None:
    assert parse_release(text) == version


@pytest.mark.parametrize("rel", ["../etc/passwd", "/etc/passwd", "proc/../../etc", "proc//sys", "a\x00b", "", "./x"])
def test_paths_that_escape_the_root_are_refused(fake: FakeKernel, rel: str) -> None:
    with pytest.raises(PathEscapeError):
        fake.root.path(rel)


def test_locked_file_answers_eperm_as_a_typed_error(fake: FakeKernel) -> None:
    with pytest.raises(KnobLockedError) as info:
        fake.root.read_text("sys/kernel/debug/sched/base_slice_ns", knob="sched.base_slice_ns")
    assert info.value.fields["errno"] == 1
    assert info.value.to_dict()["code"] == "locked"


def test_missing_file_is_not_on_this_kernel(fake: FakeKernel) -> None:
    with pytest.raises(KnobUnavailableError) as info:
        fake.root.read_text("proc/sys/kernel/sched_latency_ns")
    assert info.value.fields["kernel"].startswith("6.18")


def test_write_outside_simulated_range_is_einval_and_leaves_the_file(fake: FakeKernel) -> None:
    fake.sysctl("vm.swappiness", "60", range=(0, 200))
    with pytest.raises(InvalidValueError):
        fake.root.write_text("proc/sys/vm/swappiness", "201")
    assert fake.read("proc/sys/vm/swappiness").strip() == "60"


def test_clamping_file_stores_the_clamped_value(fake: FakeKernel) -> None:
    fake.sysctl("net.core.somaxconn", "4096", clamp=(0, 65535))
    fake.root.write_text("proc/sys/net/core/somaxconn", "100000")
    assert fake.read("proc/sys/net/core/somaxconn").strip() == "65535"


def test_choice_file_moves_its_brackets(fake: FakeKernel) -> None:
    fake.root.write_text("sys/kernel/mm/transparent_hugepage/enabled", "never")
    assert fake.read("sys/kernel/mm/transparent_hugepage/enabled").strip() == "always madvise [never]"
    with pytest.raises(InvalidValueError):
        fake.root.write_text("sys/kernel/mm/transparent_hugepage/enabled", "sometimes")


def test_cpu_shares_is_einval_while_cpu_idle_is_set(fake: FakeKernel) -> None:
    fake.root.write_text("sys/fs/cgroup/cpu/batch/cpu.idle", "1")
    with pytest.raises(InvalidValueError):
        fake.root.write_text("sys/fs/cgroup/cpu/batch/cpu.shares", "128")
    fake.root.write_text("sys/fs/cgroup/cpu/batch/cpu.idle", "0")
    fake.root.write_text("sys/fs/cgroup/cpu/batch/cpu.shares", "128")
    assert fake.read("sys/fs/cgroup/cpu/batch/cpu.shares").strip() == "128"


def test_host_root_never_reads_a_behaviours_file() -> None:
    assert KernelRoot("/").behaviours == {}
    assert KernelRoot("/").is_host


def test_host_kernel_release_is_readable() -> None:
    assert KernelRoot("/").kernel_version >= (3, 0, 0)
