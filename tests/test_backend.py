"""The backend: every knob family resolves per kernel and cgroup version, locked and missing
knobs are reported by type, and a knob id never becomes an arbitrary path (invariant 8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumos_mcp.errors import (
    InvalidParameterError,
    KnobError,
    KnobLockedError,
    KnobUnavailableError,
    ReadbackMismatchError,
    UnknownKnobError,
)
from lumos_mcp.kernelfs import KernelRoot, parse_release
from lumos_mcp.kernelfs import root as root_mod
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.knobs import default_catalog
from lumos_mcp.txn import TransactionManager

CATALOG = default_catalog()
PRE_EEVDF = {
    "latency_ns": "6000000",
    "min_granularity_ns": "750000",
    "wakeup_granularity_ns": "1000000",
    "migration_cost_ns": "500000",
    "nr_migrate": "32",
}
EEVDF = {"base_slice_ns": "3000000", "migration_cost_ns": "500000", "nr_migrate": "32"}


def build_host(base: Path, release: str, cgroup: str = "v1", debugfs: str = "open") -> FakeKernel:
    """A fake host with every catalog knob its kernel generation has.

    ``debugfs``: "open", "locked" (EPERM, as under lockdown) or "unmounted".
    """
    fake = FakeKernel(base, release=release)
    for spec in CATALOG:
        plain = [p for p in spec.paths if p.since is None and p.until is None and p.cgroup is None]
        if spec.param is None and spec.kind in ("int", "bool") and len(plain) == 1:
            fake.file(plain[0].files[0], str(spec.min if spec.min is not None else 1))
    fake.thp()
    fake.block("vda")
    if parse_release(release) < (5, 13, 0):
        for name, value in PRE_EEVDF.items():
            fake.sysctl(f"kernel.sched_{name}", value)
    elif debugfs != "unmounted":
        sched = PRE_EEVDF if parse_release(release) < (6, 6, 0) else EEVDF
        for name, value in sched.items():
            fake.debugfs_sched(name, value, locked=True if debugfs == "locked" else None)
    if cgroup == "v1":
        fake.cgroup_v1("batch")
    else:
        fake.cgroup_v2("batch")
    fake.task(100, comm="cruncher", cgroup="batch")  # for the task knobs (task.cgroup:batch.*)
    return fake


def _sched_file(release: str, name: str) -> str:
    if parse_release(release) < (5, 13, 0):
        return f"proc/sys/kernel/sched_{name}"
    return f"sys/kernel/debug/sched/{name}"


# knob -> where it lives, per kernel generation (None: not on this kernel)
SCHED_LAYOUT: dict[str, dict[str, str | None]] = {
    release: {
        f"sched.{name}": (_sched_file(release, name) if name in sched else None)
        for name in [*PRE_EEVDF, "base_slice_ns"]
    }
    | {"task.cgroup:batch.slice_us": None}  # sched_runtime is a fair task's slice from 6.12 only
    for release, sched in [("4.19.0", PRE_EEVDF), ("5.15.0-91-generic", PRE_EEVDF), ("6.6.0", EEVDF)]
}


def _all_refs(backend: Backend) -> Iterator[tuple[str, str]]:
    for spec in CATALOG:
        for ref in backend.instances(spec.id, ("batch",)):
            yield spec.id, ref.id


@pytest.mark.parametrize("release", list(SCHED_LAYOUT))
@pytest.mark.parametrize("cgroup", ["v1", "v2"])
def test_every_knob_family_resolves_on_each_kernel_generation(tmp_path: Path, release: str, cgroup: str) -> None:
    backend = Backend(build_host(tmp_path, release, cgroup).root, CATALOG)
    seen = set()
    for spec_id, knob in _all_refs(backend):
        seen.add(spec_id)
        status = backend.status(backend.catalog.lookup(knob))
        expected = SCHED_LAYOUT[release].get(knob, "somewhere")
        if spec_id == "cgroup.{name}.cpu_shares" and cgroup == "v2":
            expected = None
        if expected is None:
            assert status.state == "not_on_this_kernel", knob
            with pytest.raises(KnobUnavailableError):
                backend.resolve(knob)
            continue
        assert status.state == "available", (knob, status.detail)
        res = backend.resolve(knob)
        files = res.files
        assert backend.is_task(res) or all(backend.root.exists(f) for f in files)  # a task knob has no file
        if expected != "somewhere":
            assert files == (expected,)
    assert seen == {s.id for s in CATALOG}


def test_cfs_knobs_removed_by_eevdf_are_reported_with_the_catalog_note(tmp_path: Path) -> None:
    backend = Backend(build_host(tmp_path, "6.6.0").root, CATALOG)
    with pytest.raises(KnobUnavailableError) as info:
        backend.resolve("sched.latency_ns")
    assert info.value.detail == CATALOG.spec("sched.latency_ns").note
    assert info.value.fields == {"knob": "sched.latency_ns", "kernel": "6.6.0"}
    status = backend.status(CATALOG.lookup("sched.latency_ns"))
    assert (status.state, status.value) == ("not_on_this_kernel", None)


def test_locked_debugfs_is_reported_as_locked_not_as_a_crash(tmp_path: Path) -> None:
    backend = Backend(build_host(tmp_path, "6.18.44", debugfs="locked").root, CATALOG)
    with pytest.raises(KnobLockedError) as info:
        backend.read("sched.base_slice_ns")
    assert info.value.fields == {
        "knob": "sched.base_slice_ns",
        "path": "sys/kernel/debug/sched/base_slice_ns",
        "errno": 1,
    }
    for knob in ("sched.base_slice_ns", "sched.migration_cost_ns", "sched.nr_migrate"):
        assert backend.status(CATALOG.lookup(knob)).state == "locked"
    manager = TransactionManager(backend, tmp_path / "journal")
    with pytest.raises(KnobLockedError):
        manager.stage({"sched.base_slice_ns": 2_000_000})


def test_unmounted_debugfs_says_so(tmp_path: Path) -> None:
    backend = Backend(build_host(tmp_path, "5.15.0", debugfs="unmounted").root, CATALOG)
    with pytest.raises(KnobUnavailableError) as info:
        backend.resolve("sched.latency_ns")
    assert "debugfs is not mounted" in info.value.detail
    assert backend.status(CATALOG.lookup("sched.migration_cost_ns")).state == "not_on_this_kernel"


def test_cgroup_v1_maps_weight_to_shares_and_cpu_max_to_quota_and_period(tmp_path: Path) -> None:
    fake = build_host(tmp_path, "6.18.44", cgroup="v1")
    backend = Backend(fake.root, CATALOG)
    d = "sys/fs/cgroup/cpu/batch"
    assert backend.cgroup_version() == "v1"

    weight = backend.resolve("cgroup.batch.cpu_weight")
    assert (weight.files, weight.codec) == ((f"{d}/cpu.shares",), "weight_as_shares")
    assert backend.read(weight).value == 100
    backend.write(weight, 50)
    assert fake.read(f"{d}/cpu.shares") == "512\n"
    shares = backend.resolve("cgroup.batch.cpu_shares")
    assert shares.files == weight.files
    assert backend.read(shares).value == 512

    cpu_max = backend.resolve("cgroup.batch.cpu_max")
    assert cpu_max.files == (f"{d}/cpu.cfs_period_us", f"{d}/cpu.cfs_quota_us")
    assert backend.read(cpu_max).value == "max 100000"
    backend.write(cpu_max, "50000 200000")
    assert (fake.read(f"{d}/cpu.cfs_quota_us"), fake.read(f"{d}/cpu.cfs_period_us")) == ("50000\n", "200000\n")

    idle = backend.resolve("cgroup.batch.cpu_idle")
    assert idle.files == (f"{d}/cpu.idle",)
    assert backend.read(idle).value is False


def test_cgroup_v2_uses_weight_max_and_idle_files_and_has_no_shares(tmp_path: Path) -> None:
    fake = build_host(tmp_path, "6.18.44", cgroup="v2")
    backend = Backend(fake.root, CATALOG)
    d = "sys/fs/cgroup/batch"
    assert backend.cgroup_version() == "v2"
    weight = backend.resolve("cgroup.batch.cpu_weight")
    assert (weight.files, weight.codec) == ((f"{d}/cpu.weight",), "plain")
    backend.write(weight, 50)
    assert fake.read(f"{d}/cpu.weight") == "50\n"
    cpu_max = backend.resolve("cgroup.batch.cpu_max")
    assert (cpu_max.files, cpu_max.codec) == ((f"{d}/cpu.max",), "cpu_max_v2")
    backend.write(cpu_max, "50000 100000")
    assert fake.read(f"{d}/cpu.max") == "50000 100000\n"
    assert backend.resolve("cgroup.batch.cpu_idle").files == (f"{d}/cpu.idle",)
    with pytest.raises(KnobUnavailableError):
        backend.resolve("cgroup.batch.cpu_shares")


def test_a_hybrid_host_whose_unified_root_lacks_cpu_uses_cgroup_v1(tmp_path: Path) -> None:
    fake = build_host(tmp_path, "6.18.44", cgroup="v1")
    fake.file("sys/fs/cgroup/cgroup.controllers", "memory pids")
    assert Backend(fake.root, CATALOG).cgroup_version() == "v1"


def test_a_clamped_write_is_reported_as_a_readback_mismatch(tmp_path: Path) -> None:
    fake = build_host(tmp_path, "6.18.44")
    fake.sysctl("vm.swappiness", "60", clamp=(0, 100))
    backend = Backend(fake.root, CATALOG)
    with pytest.raises(ReadbackMismatchError) as info:
        backend.write(backend.resolve("vm.swappiness"), 150)
    assert (info.value.fields["expected"], info.value.fields["actual"]) == (150, 100)


def test_write_raw_restores_the_exact_text_it_saved(tmp_path: Path) -> None:
    fake = build_host(tmp_path, "6.18.44")
    backend = Backend(fake.root, CATALOG)
    for knob, value in [("thp.enabled", "never"), ("cgroup.batch.cpu_max", "20000 50000"), ("vm.swappiness", 10)]:
        res = backend.resolve(knob)
        saved = backend.read(res).raw
        backend.write(res, value)
        backend.write_raw(res, saved)
        assert tuple(fake.read(f) for f in res.files) == saved


# ---------------------------------------------------------------------------- invariant 8
BAD_PARAMETERS = [
    "..",
    "../..",
    "../../../etc",
    "batch/../..",
    "batch/../../../../etc",
    "/etc",
    "//etc",
    "batch/",
    "./batch",
    "batch\x00",
    "ba\x00tch",
    "bätch",
    "batch\u2215..",
    "vda\n",
    "",
    "a" * 64 + "b",
    "x/" * 10 + "x",
    "nosuch",
    "sdz",
]
PARAMETRISED = [s.id for s in CATALOG if s.param is not None]


def _snapshot(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.fixture
def recorded_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path any KernelRoot is asked to write, whatever the outcome."""
    calls: list[str] = []
    original = root_mod.KernelRoot.write_text

    def recording(self: KernelRoot, rel: str, value: str, *, knob: str | None = None) -> None:
        calls.append(rel)
        original(self, rel, value, knob=knob)

    monkeypatch.setattr(root_mod.KernelRoot, "write_text", recording)
    return calls


@pytest.mark.parametrize("template", PARAMETRISED)
@pytest.mark.parametrize("param", BAD_PARAMETERS, ids=repr)
def test_invariant_8_bad_parameters_are_refused_and_touch_no_file(
    tmp_path: Path, recorded_writes: list[str], template: str, param: str
) -> None:
    fake = build_host(tmp_path / "kernel", "6.18.44")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0\n")  # what an escape would reach
    backend = Backend(fake.root, CATALOG)
    manager = TransactionManager(backend, tmp_path / "state" / "journal")
    before = _snapshot(tmp_path)
    knob = CATALOG.spec(template).instance_id(param)
    attempts = [
        lambda: backend.resolve(knob),
        lambda: backend.read(knob),
        lambda: manager.stage({knob: 1}),
        lambda: manager.stage({"vm.swappiness": 10, knob: 1}),
        lambda: manager.holder_of(knob),
    ]
    for attempt in attempts:
        with pytest.raises((InvalidParameterError, UnknownKnobError)):
            attempt()
    assert backend.status(CATALOG.lookup("vm.swappiness")).state == "available"
    assert recorded_writes == []
    assert _snapshot(tmp_path) == before
    assert manager.transactions() == []


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(param=st.text(max_size=80), template=st.sampled_from(PARAMETRISED))
def test_invariant_8_any_parameter_resolves_inside_the_tree_or_is_refused(
    fake: FakeKernel, param: str, template: str
) -> None:
    knob = CATALOG.spec(template).instance_id(param)
    backend = Backend(fake.root, CATALOG)
    try:
        res = backend.resolve(knob)
    except KnobError:
        return
    assert param in ("vda", "batch")
    for f in res.files:
        assert fake.root.path(f).resolve().is_relative_to(fake.root.base)
