"""Task knobs (slice, nice, policy, affinity) through kernelfs/tasks.py, on the fake task table:
every error path the kernel has, selectors, and transactions that journal and restore each
task's own original. Live tests touch only processes and cgroups they create."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumos_mcp.errors import (
    ApplyFailedError,
    InvalidParameterError,
    InvalidValueError,
    KnobUnavailableError,
    NoTasksMatchError,
    ReadbackMismatchError,
)
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.cgroups import CgroupManager
from lumos_mcp.kernelfs.fake import FakeKernel, typical_host
from lumos_mcp.kernelfs.root import KernelRoot, parse_release
from lumos_mcp.kernelfs.tasks import SCHED_BATCH, SCHED_RR, HostTasks, TaskId, parse_selector, parse_state, state_of
from lumos_mcp.knobs import codec, default_catalog
from lumos_mcp.txn.manager import TransactionManager

SLICE = "task.cgroup:batch.slice_us"


@pytest.fixture
def tasks(fake: FakeKernel) -> FakeKernel:
    """Two processes in cgroup batch (one with a second thread holding a custom slice), one outside."""
    fake.task(100, comm="cruncher", cgroup="batch")
    fake.task(101, comm="cruncher", cgroup="batch", tgid=100, slice_ns=3_000_000)
    fake.task(110, comm="cruncher", cgroup="batch")
    fake.task(200, comm="probe-srv", cgroup="")
    return fake


@pytest.fixture
def manager(tasks: FakeKernel, backend: Backend, journal_path: Path) -> TransactionManager:
    return TransactionManager(backend, journal_path)


# --------------------------------------------------------------------------- reading
def test_a_cgroup_selector_reads_the_value_most_tasks_hold_and_journals_the_others(
    tasks: FakeKernel, backend: Backend
) -> None:
    reading = backend.read(SLICE)
    assert reading.value == 1400
    assert reading.raw == ("1400 except 101/1101=3000",)


def test_a_comm_selector_picks_every_thread_of_matching_processes_only(tasks: FakeKernel, backend: Backend) -> None:
    selected = backend.tasks.select(parse_selector("comm:crunch*"), "nice")
    assert sorted(t.tid for t in selected) == [100, 101, 110]
    assert [t.tid for t in backend.tasks.select(parse_selector("comm:probe-srv"), "nice")] == [200]


def test_kernel_threads_are_never_selected_by_command_name(tasks: FakeKernel, backend: Backend) -> None:
    tasks.task(2, comm="kcruncher", kthread=True)
    assert 2 not in [t.tid for t in backend.tasks.select(parse_selector("comm:*cruncher"), "nice")]


@pytest.mark.parametrize(
    "knob", ["task.comm:*.nice", "task.comm:a*.nice", "task.cgroup:../x.nice", "task.pid:12.nice", "task.cgroup:.nice"]
)
def test_loose_or_malformed_selectors_are_refused(tasks: FakeKernel, backend: Backend, knob: str) -> None:
    with pytest.raises(InvalidParameterError) as e:
        backend.read(knob)
    assert e.value.code == "invalid_parameter"


def test_a_selector_that_matches_nothing_is_a_typed_error_at_stage(manager: TransactionManager) -> None:
    with pytest.raises(NoTasksMatchError) as e:
        manager.stage({"task.comm:nosuchthing.nice": 5})
    assert e.value.fields["selector"] == "comm:nosuchthing"


def test_a_missing_cgroup_is_an_invalid_parameter(manager: TransactionManager) -> None:
    with pytest.raises(InvalidParameterError):
        manager.stage({"task.cgroup:nosuchgroup.nice": 5})


def test_the_slice_selects_only_fair_tasks(tasks: FakeKernel, backend: Backend) -> None:
    tasks.task(120, comm="rt", cgroup="batch", policy=SCHED_RR, prio=10)
    assert 120 not in [t.tid for t in backend.tasks.select(parse_selector("cgroup:batch"), "slice_us")]
    assert 120 in [t.tid for t in backend.tasks.select(parse_selector("cgroup:batch"), "policy")]


def test_policy_reads_with_the_real_time_priority(tasks: FakeKernel, backend: Backend) -> None:
    tasks.task(130, comm="rtjob", cgroup="", policy=SCHED_RR, prio=10)
    tasks.task(131, comm="bjob", cgroup="", policy=SCHED_BATCH)
    assert backend.read("task.comm:rtjob.policy").value == "rr-10"
    assert backend.read("task.comm:bjob.policy").value == "batch"


# --------------------------------------------------------------------------- the slice and the kernel
def test_the_slice_is_not_on_a_kernel_that_ignores_sched_runtime(tasks: FakeKernel, backend: Backend) -> None:
    tasks.task_config(honours_slice=False)
    with pytest.raises(KnobUnavailableError) as e:
        backend.resolve(SLICE)
    assert e.value.code == "not_on_this_kernel"
    assert backend.status(default_catalog().lookup(SLICE)).state == "not_on_this_kernel"


def test_the_slice_is_available_where_the_kernel_reports_a_fair_slice(tasks: FakeKernel, backend: Backend) -> None:
    tasks.task_config(honours_slice=True)
    assert backend.status(default_catalog().lookup(SLICE)).state == "available"


def test_the_slice_is_not_on_kernels_before_6_12(tmp_path: Path) -> None:
    old = typical_host(tmp_path / "old", release="6.6.30")
    old.task(100, comm="cruncher", cgroup="batch")
    with pytest.raises(KnobUnavailableError):
        Backend(old.root, default_catalog()).resolve(SLICE)


def test_the_fake_clamps_a_slice_like_the_kernel_and_the_read_back_says_so(tasks: FakeKernel, backend: Backend) -> None:
    res = backend.resolve(SLICE)
    with pytest.raises(ReadbackMismatchError) as e:
        backend.write(res, 50)  # below the kernel's 100 us floor (the catalog would refuse it first)
    assert e.value.fields["actual"] == 100
    assert tasks.task_value(100, "slice_ns") == 100_000


def test_a_slice_write_keeps_the_tasks_nice(tasks: FakeKernel, backend: Backend) -> None:
    tasks.task(140, comm="nicejob", nice=7)
    backend.write(backend.resolve("task.comm:nicejob.slice_us"), 500)
    assert tasks.task_value(140, "nice") == 7
    assert tasks.task_value(140, "slice_ns") == 500_000


def test_a_policy_change_keeps_nice_and_slice(tasks: FakeKernel, backend: Backend) -> None:
    tasks.task(150, comm="keepjob", nice=4, slice_ns=800_000)
    backend.write(backend.resolve("task.comm:keepjob.policy"), "batch")
    assert (tasks.task_value(150, "policy"), tasks.task_value(150, "nice"), tasks.task_value(150, "slice_ns")) == (
        SCHED_BATCH,
        4,
        800_000,
    )


# --------------------------------------------------------------------------- errors on apply
def test_eperm_on_one_task_fails_the_apply_and_rolls_back_the_tasks_written(
    tasks: FakeKernel, manager: TransactionManager
) -> None:
    tasks.task(105, comm="cruncher", cgroup="batch", eperm=True)
    tx = manager.stage({"task.cgroup:batch.nice": 10})
    with pytest.raises(ApplyFailedError) as e:
        manager.apply(tx.id, 60)
    assert e.value.fields["cause"]["code"] == "permission_denied"
    assert [tasks.task_value(t, "nice") for t in (100, 101, 105, 110)] == [0, 0, 0, 0]


def test_einval_for_cpus_the_host_lacks_is_an_invalid_value(tasks: FakeKernel, manager: TransactionManager) -> None:
    tx = manager.stage({"task.cgroup:batch.affinity": "7"})
    with pytest.raises(ApplyFailedError) as e:
        manager.apply(tx.id, 60)
    assert e.value.fields["cause"]["code"] == "invalid_value"
    assert tasks.task_value(100, "cpus") == [0, 1]


def test_affinity_reads_back_what_the_kernel_kept(tasks: FakeKernel, backend: Backend) -> None:
    with pytest.raises(ReadbackMismatchError) as e:
        backend.write(backend.resolve("task.cgroup:batch.affinity"), "1-3")  # CPUs 2-3 are not online
    assert e.value.fields["actual"] == "1"


def test_real_time_in_a_group_without_rt_runtime_is_the_rt_runtime_trap(
    tasks: FakeKernel, manager: TransactionManager
) -> None:
    tasks.file("sys/fs/cgroup/cpu/batch/cpu.rt_runtime_us", "0")
    tx = manager.stage({"task.cgroup:batch.policy": "rr-10"})
    with pytest.raises(ApplyFailedError) as e:
        manager.apply(tx.id, 60)
    assert e.value.fields["cause"]["code"] == "rt_runtime_zero"
    assert e.value.fields["cause"]["cgroup"] == "batch"


def test_real_time_in_a_group_with_rt_runtime_applies_and_reverts_with_the_default_slice(
    tasks: FakeKernel, manager: TransactionManager
) -> None:
    tasks.file("sys/fs/cgroup/cpu/batch/cpu.rt_runtime_us", "10000")
    tx = manager.stage({"task.cgroup:batch.policy": "fifo-5"})
    manager.apply(tx.id, 60)
    assert (tasks.task_value(100, "policy"), tasks.task_value(100, "prio")) == (1, 5)
    manager.revert(tx.id)
    assert (tasks.task_value(100, "policy"), tasks.task_value(100, "prio")) == (0, 0)
    # the kernel reports no slice for a real-time task, so back to fair it gets the default one
    assert tasks.task_value(101, "slice_ns") == 1_400_000


def test_a_task_that_exits_between_read_and_write_is_skipped(tasks: FakeKernel, manager: TransactionManager) -> None:
    tasks.task(106, comm="cruncher", cgroup="batch", exits_on_write=True)
    tx = manager.stage({"task.cgroup:batch.nice": 5})
    manager.apply(tx.id, 60)
    assert "106" not in tasks.tasks.load()["tasks"]
    assert tasks.task_value(100, "nice") == 5


# --------------------------------------------------------------------------- revert
def test_revert_gives_each_task_its_own_original_and_a_task_born_since_the_base(
    tasks: FakeKernel, manager: TransactionManager
) -> None:
    tx = manager.stage({SLICE: 300})
    manager.apply(tx.id, 60)
    tasks.fork(100, 102, thread=True)  # inherits 300 from its parent
    assert tasks.task_value(102, "slice_ns") == 300_000
    _, results = manager.revert(tx.id)
    assert results[0].action == "restored"
    assert [tasks.task_value(t, "slice_ns") for t in (100, 101, 102, 110)] == [
        1_400_000,
        3_000_000,
        1_400_000,
        1_400_000,
    ]
    assert tasks.task_value(200, "slice_ns") == 1_400_000


def test_revert_skips_exited_tasks_without_an_error(tasks: FakeKernel, manager: TransactionManager) -> None:
    tx = manager.stage({SLICE: 300})
    manager.apply(tx.id, 60)
    tasks.exit(101).exit(110)
    _, results = manager.revert(tx.id)
    assert results[0].action == "restored"
    assert tasks.task_value(100, "slice_ns") == 1_400_000


def test_revert_when_every_task_exited_is_not_an_error(tasks: FakeKernel, manager: TransactionManager) -> None:
    tx = manager.stage({"task.comm:probe-srv.nice": 3})
    manager.apply(tx.id, 60)
    tasks.exit(200)
    _, results = manager.revert(tx.id)
    assert results[0].action == "unchanged"


def test_a_task_someone_else_changed_is_left_as_found_and_reported(
    tasks: FakeKernel, manager: TransactionManager
) -> None:
    tx = manager.stage({"task.cgroup:batch.nice": 5})
    manager.apply(tx.id, 60)
    data = tasks.tasks.load()
    data["tasks"]["110"]["nice"] = 12  # renice by someone else
    tasks.tasks.save(data)
    _, results = manager.revert(tx.id)
    assert results[0].action == "external_change"
    assert (tasks.task_value(100, "nice"), tasks.task_value(110, "nice")) == (0, 12)


def test_a_task_moved_into_the_group_after_apply_is_restored_only_if_it_holds_our_value(
    tasks: FakeKernel, manager: TransactionManager
) -> None:
    tx = manager.stage({"task.cgroup:batch.nice": 5})
    manager.apply(tx.id, 60)
    tasks.task(120, comm="visitor", cgroup="batch", nice=0)  # holds the base already: nothing to do
    _, results = manager.revert(tx.id)
    assert results[0].action == "restored"
    assert tasks.task_value(120, "nice") == 0


def test_recovery_after_a_crash_restores_every_task_from_the_journal(
    tasks: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    first = TransactionManager(backend, journal_path)
    tx = first.stage({SLICE: 200, "task.comm:probe-srv.nice": 4})
    first.apply(tx.id, 600)
    tasks.fork(110, 111)
    # the server dies here (no revert); a new one starts over the same kernel and journal
    second = TransactionManager(Backend(KernelRoot(tasks.base), default_catalog()), journal_path)
    report = second.recover()
    assert report.clean
    assert {k.knob: k.action for k in report.knobs} == {SLICE: "restored", "task.comm:probe-srv.nice": "restored"}
    assert [tasks.task_value(t, "slice_ns") for t in (100, 101, 110, 111)] == [
        1_400_000,
        3_000_000,
        1_400_000,
        1_400_000,
    ]
    assert tasks.task_value(200, "nice") == 0


@pytest.mark.parametrize("text", ["0 except 1/x=3", "0 1/2=3", "", "0 except"])
def test_a_journaled_state_that_is_not_a_task_state_does_not_decode(text: str) -> None:
    # recovery refuses (never writes) an original its codec cannot read
    spec = default_catalog().spec("task.{sel}.nice")
    with pytest.raises(InvalidValueError):
        codec.decode("task", spec, (text,))


# --------------------------------------------------------------------------- state text
def test_the_state_text_round_trips_and_takes_the_commonest_value_as_base() -> None:
    values = {TaskId(1, 10): "5", TaskId(2, 20): "0", TaskId(3, 30): "0"}
    state = state_of(values)
    assert state.text() == "0 except 1/10=5"
    assert parse_state(state.text()) == state


# --------------------------------------------------------------------------- live
def _live_ok() -> bool:
    return os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup/cpu") and parse_release(os.uname().release) >= (6, 12, 0)


@pytest.mark.live
@pytest.mark.skipif(not _live_ok(), reason="needs root, cgroup v1 and kernel 6.12+")
def test_live_this_kernel_honours_sched_runtime_for_fair_tasks() -> None:
    assert HostTasks(KernelRoot("/")).honours_slice()


@pytest.mark.live
@pytest.mark.skipif(not _live_ok(), reason="needs root, cgroup v1 and kernel 6.12+")
def test_live_slice_nice_affinity_and_the_rt_trap_on_a_group_the_test_made(tmp_path: Path) -> None:
    root = KernelRoot("/")
    cg = CgroupManager(root)
    name = f"lumos-test-tasks-{os.getpid()}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cg.create(name)
        cg.attach(name, child.pid)
        manager = TransactionManager(Backend(root, default_catalog()), tmp_path / "journal")
        before = manager.backend.read(f"task.cgroup:{name}.slice_us").value
        tx = manager.stage(
            {f"task.cgroup:{name}.slice_us": 300, f"task.cgroup:{name}.nice": 5, f"task.cgroup:{name}.affinity": "0"}
        )
        manager.apply(tx.id, 60)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 5
        assert os.sched_getaffinity(child.pid) == {0}
        assert manager.backend.read(f"task.cgroup:{name}.slice_us").value == 300
        _, results = manager.revert(tx.id)
        assert {r.action for r in results} == {"restored"}
        assert manager.backend.read(f"task.cgroup:{name}.slice_us").value == before
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 0
        assert os.sched_getaffinity(child.pid) == os.sched_getaffinity(0)
        rt = manager.stage({f"task.cgroup:{name}.policy": "rr-5"})
        with pytest.raises(ApplyFailedError) as e:  # a new v1 group has cpu.rt_runtime_us = 0
            manager.apply(rt.id, 60)
        assert e.value.fields["cause"]["code"] == "rt_runtime_zero"
        assert os.sched_getscheduler(child.pid) == os.SCHED_OTHER
    finally:
        child.kill()
        child.wait(timeout=10)
        cg.remove(name)


# --------------------------------------------------------------------------- the expert
def test_the_expert_shortens_the_latency_groups_slice_only_after_the_batch_weights() -> None:
    from lumos_mcp.agents.expert import propose
    from tests.test_agent import tunable

    sig = {"psi": {"cpu": {"some": {"avg10_pct": 40.0}}}}
    knobs = [
        tunable("cgroup.batch.cpu_weight", 100, min=1, max=1000, max_step_ratio=0.9),
        tunable("cgroup.web.cpu_weight", 100, min=1, max=1000, max_step_ratio=0.9),
        tunable("task.cgroup:web.slice_us", 1400, min=100, max=20000, max_step_ratio=3.0),
        tunable("task.cgroup:batch.slice_us", 1400, min=100, max=20000, max_step_ratio=3.0),
    ]
    first = propose(sig, knobs, set(), frozenset({"web"}))
    assert first is not None and first.changes == {"cgroup.batch.cpu_weight": 25}  # never web's weight
    second = propose(sig, knobs, {"cgroup.batch.cpu_weight"}, frozenset({"web"}))
    assert second is not None and second.rule == "cpu-contention-slice"
    assert second.changes == {"task.cgroup:web.slice_us": 300}


def test_the_expert_never_touches_a_slice_without_a_named_latency_group() -> None:
    from lumos_mcp.agents.expert import propose
    from tests.test_agent import tunable

    sig = {"psi": {"cpu": {"some": {"avg10_pct": 40.0}}}}
    knobs = [tunable("task.cgroup:batch.slice_us", 1400, min=100, max=20000, max_step_ratio=3.0)]
    assert propose(sig, knobs, set()) is None


# --------------------------------------------------------------------------- sandbox
def test_the_sandbox_copies_the_tasks_of_its_cgroups_and_their_knobs_work_there(
    tasks: FakeKernel, tmp_path: Path
) -> None:
    from lumos_mcp.sandbox import ensure_sandbox

    sandbox = ensure_sandbox(tmp_path / "sandbox", tasks.root, default_catalog(), ("batch",))
    backend = Backend(sandbox, default_catalog())
    assert backend.read(SLICE).raw == ("1400 except 101/1101=3000",)
    backend.write(backend.resolve(SLICE), 500)
    assert tasks.task_value(100, "slice_ns") == 1_400_000  # the host's task is untouched
