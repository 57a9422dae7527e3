"""The guards' per-sample read: one path at a time from the newest pair of snapshots, giving what
the full signature gives at that path, and evaluated once per new sample."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumos_mcp.guards import TelemetrySource, lookup
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.service import Service
from lumos_mcp.telemetry import Telemetry
from lumos_mcp.telemetry.paths import IDENTITY_FIELDS
from lumos_mcp.telemetry.perf import PerfInterval
from lumos_mcp.txn import TxState

DATA = Path(__file__).resolve().parent / "data" / "proc"
STEP = DATA / "6.18-step"
APP_NAMES = ("p99_ms", "db.p99", "rps")
STEPS = 8  # samples 006-013 of the recorded step: idle, then the two busy loops start before 012


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakePerf:
    """The part of PerfStat the signature reads: completed intervals on the telemetry's clock."""

    history: list[PerfInterval] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    interval_ms: int = 1000
    clock: Callable[[], float] = lambda: 0.0

    def intervals(self, since: float | None = None) -> list[PerfInterval]:
        return [iv for iv in self.history if since is None or iv.t >= since]


def _step_tree(base: Path) -> tuple[FakeKernel, list[tuple[str, float]]]:
    """The full 6.18 recording with the idle-then-busy step's stat, loadavg and PSI laid over it
    sample by sample (so rates and gauges move), plus a cgroup v2 group ``batch``."""
    fake = FakeKernel(base, release="6.18.0-recorded")
    shutil.copytree(DATA / "6.18", base / "proc", dirs_exist_ok=True, ignore=shutil.ignore_patterns("README"))
    fake.cgroup_v2("batch")
    steps = [(i, float(t)) for i, t in (line.split() for line in (STEP / "clock").read_text().splitlines())]
    return fake, steps[6 : 6 + STEPS]


def _leaf_paths(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every leaf path of a dumped signature, list items by their identity (as guards name them)."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaf_paths(value, path + ".")
        elif isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
            for item in value:
                ident = next(str(item[k]) for k in IDENTITY_FIELDS if k in item)
                yield from (f"{path}.{ident}.{f}" for f in item)
        else:
            yield path


KINDS = ("value", "values", "histogram")
"""How a drawn report feeds its metric: one value, a batch of samples, or a histogram."""
ABSENT = ["app.never_reported.last", "cgroups.nope.throttled_pct", "io.nodisk.util_pct", "psi.cpu", "nope.x", "app.x"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    reports=st.lists(
        st.tuples(
            st.integers(1, STEPS),
            st.floats(0.0, 1.0),
            st.sampled_from(APP_NAMES),
            st.floats(-1e6, 1e6, allow_nan=False),
            st.sampled_from(KINDS),
        ),
        max_size=40,
    ),
    pair=st.integers(1, STEPS - 1),
    late_s=st.floats(0.0, 2.0),
    with_perf=st.booleans(),
)
def test_the_per_sample_read_gives_at_every_path_what_the_full_signature_gives(
    tmp_path_factory: pytest.TempPathFactory,
    reports: list[tuple[int, float, str, float, str]],
    pair: int,
    late_s: float,
    with_perf: bool,
) -> None:
    base = tmp_path_factory.mktemp("tree")
    fake, steps = _step_tree(base)
    clock = Clock(steps[0][1])
    perf = FakePerf()
    telemetry = Telemetry(
        fake.root,
        interval_s=0.5,
        clock=clock,
        wall_clock=clock,
        cgroups=("batch",),
        perf=perf if with_perf else None,  # type: ignore[arg-type]
    )
    usage = 0
    times = [when for _, when in steps] + [steps[-1][1] + late_s]

    def report_during(interval: int) -> None:
        """The drawn reports of ``interval`` (the one ending at sample ``interval``), in clock order."""
        for _, frac, name, value, kind in sorted(r for r in reports if r[0] == interval):
            clock.now = times[interval - 1] + frac * (times[interval] - times[interval - 1])
            if kind == "value":
                telemetry.report_app_metric(name, value, "ms")
            elif kind == "values":  # a batch, one of them older than the report
                telemetry.app.report_samples(name, [value, value / 2], "ms", ages_s=[0.0, 0.3])
            else:  # a histogram's own interval: the count scales with the drawn value
                n = int(abs(value)) % 50 + 1
                telemetry.app.report_histogram(name, [(1.0, n), (math.inf, 2 * n)], "ms", "this_interval")

    for n, (index, when) in enumerate(steps):
        shutil.copytree(STEP / index, base / "proc", dirs_exist_ok=True)
        usage += 1000 * n
        fake.file("sys/fs/cgroup/batch/cpu.stat", f"usage_usec {usage}\nnr_periods {n}\nnr_throttled {n // 3}\n")
        if n:
            report_during(n)
        clock.now = when
        telemetry.sampler.sample_once()
        counts = {"cycles": 1e9 + n, "instructions": 2e9, "cpu-migrations": 40.0 * n, "task-clock": 500.0}
        perf.history.append(PerfInterval(when, 0.5, MappingProxyType(counts), MappingProxyType({})))
    report_during(len(steps))  # after the last sample, before the read: the read sees them too
    clock.now = times[-1]
    snaps = telemetry.sampler.samples()
    a, b = snaps[pair - 1], snaps[pair]
    view = telemetry.pair_values(a, b)
    full = telemetry.signature_between(a.wall, b.wall)
    paths = [*_leaf_paths(full.model_dump()), *ABSENT]
    assert any(p.startswith("cgroups.batch.") for p in paths) and any(p.startswith("psi.cpu.") for p in paths)
    for path in paths:
        assert lookup(view, path) == lookup(full, path), path


def test_a_per_sample_read_computes_only_the_section_its_path_is_in(tmp_path: Path) -> None:
    fake, steps = _step_tree(tmp_path)
    clock = Clock(steps[0][1])
    telemetry = Telemetry(fake.root, interval_s=0.5, clock=clock, wall_clock=clock, cgroups=("batch",))
    for index, when in steps[:3]:
        shutil.copytree(STEP / index, tmp_path / "proc", dirs_exist_ok=True)
        clock.now = when
        telemetry.sampler.sample_once()
    telemetry.report_app_metric("p99_ms", 3.0, "ms")
    a, b = telemetry.sampler.samples()[-2:]
    view = telemetry.pair_values(a, b)
    assert lookup(view, "psi.cpu.some.avg10_pct") is not None
    assert lookup(view, "app.p99_ms.last") == 3.0
    assert set(view._sections) == {"psi"}  # no cpu, io, network, cgroups, memory or app section built


def test_the_guard_source_hands_each_new_sample_once_and_nothing_between_samples(tmp_path: Path) -> None:
    fake, steps = _step_tree(tmp_path)
    clock = Clock(steps[0][1])
    telemetry = Telemetry(fake.root, interval_s=0.5, clock=clock, wall_clock=clock)
    source = TelemetrySource(telemetry)
    for index, when in steps[:4]:
        shutil.copytree(STEP / index, tmp_path / "proc", dirs_exist_ok=True)
        clock.now = when
        telemetry.sampler.sample_once()
    snaps = telemetry.sampler.samples()
    assert [t for t, _ in source.samples_after(snaps[1].wall)] == [snaps[2].wall, snaps[3].wall]
    assert source.samples_after(snaps[3].wall) == []
    assert [t for t, _ in source.recent(2)] == [snaps[2].wall, snaps[3].wall]
    assert [t for t, _ in source.samples_after(0.0, limit=2)] == [snaps[2].wall, snaps[3].wall]
    again = source.samples_after(snaps[2].wall)
    assert again[0][1] is source.samples_after(snaps[1].wall)[-1][1]  # made once per snapshot


GUARDED = """name = "guarded"
[global]
confirm_within_s = 120
[knobs."vm.swappiness"]
min = 0
max = 100
approval = "never"
[guards]
baseline_samples = 2
[[guards.rules]]
metric = "app.p99_ms.last"
ratio = 2.0
hold_samples = 2
"""


@pytest.mark.anyio
@pytest.mark.slow
async def test_guards_are_evaluated_once_per_new_sample_not_at_every_deadline_poll(
    make_service: Callable[..., Service], tmp_path: Path, fake: FakeKernel
) -> None:
    policy = tmp_path / "guarded.toml"
    policy.write_text(GUARDED)
    service = make_service(policy=str(policy), telemetry_interval_s=0.05)
    calls: list[int] = []
    check = service.check_guards
    telemetry = service.telemetry
    async with telemetry.running(), anyio.create_task_group() as tg:
        tg.start_soon(service.run_deadlines, 0.005)
        with anyio.fail_after(10):
            while len(telemetry.sampler.samples()) < 4:
                telemetry.report_app_metric("p99_ms", 1.0, "ms")
                await anyio.sleep(0.02)
        tx = service.apply(service.stage({"vm.swappiness": 10}).tx.id)

        def counted() -> list[Any]:
            calls.append(len(telemetry.sampler.samples()))
            return check()

        service.check_guards = counted  # type: ignore[method-assign]
        first = len(telemetry.sampler.samples())
        with anyio.fail_after(10):
            while len(telemetry.sampler.samples()) < first + 6:
                telemetry.report_app_metric("p99_ms", 1.0, "ms")
                await anyio.sleep(0.02)
        samples = len(telemetry.sampler.samples()) - first
        tg.cancel_scope.cancel()
    assert tx.state is TxState.APPLIED
    # the deadline loop polled about ten times per sample; the guards ran once per sample
    assert 1 <= len(calls) <= samples + 1
