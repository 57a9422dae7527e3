"""Arena problems: which knobs, over which range, against which workloads, scored how.

A problem minimises the latency probe's tail (the fraction of requests over an SLO, a less
fragile measure than one p99; p99 is reported beside it) while the batch job keeps at least
``floor_fraction`` of the throughput it had at default settings. A third CPU consumer (an
untuned neighbour) is what makes this a trade-off on this machine: with only the victim and
the batch job, the batch job keeps its throughput at every ``cpu.shares`` value (the victim
uses little CPU), so lowering the batch job's shares would be free and the problem degenerate.
With the neighbour, every share the batch job gives up goes partly to the neighbour.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

ARENA_PARENT = "lumos-arenax"
"""The arena strategies' own parent cgroup (not ``lumos-arena``: other experiments may use that one)."""

Value = int | bool
Config = dict[str, Value]
KnobKind = Literal["int_log", "int", "bool"]
ScenarioName = Literal["steady", "shift", "neighbour"]
VictimName = Literal["probe", "pgbench"]
Objective = Literal["frac_over_slo", "p99_us"]


@dataclass(frozen=True)
class KnobRange:
    """One tunable dimension: a catalog knob id, its search range and its sweep grid."""

    knob_id: str
    kind: KnobKind
    low: int
    high: int
    default: Value
    grid: tuple[Value, ...]

    @property
    def short(self) -> str:
        """``batch.cpu_shares`` for ``cgroup.lumos-arena/batch.cpu_shares``; the sysctl name otherwise."""
        if self.knob_id.startswith("cgroup."):
            return self.knob_id.split(".", 1)[1].rsplit("/", 1)[-1]
        if self.knob_id.startswith("task."):  # task.cgroup:lumos-arenax/victim.slice_us -> victim.slice_us
            return self.knob_id.rsplit("/", 1)[-1]
        return self.knob_id.removeprefix("kernel.")

    def clip(self, value: Value) -> Value:
        if self.kind == "bool":
            return bool(value)
        return int(min(self.high, max(self.low, int(value))))


def shares(group: str, grid: Sequence[int], default: int = 1024, parent: str = ARENA_PARENT) -> KnobRange:
    return KnobRange(f"cgroup.{parent}/{group}.cpu_shares", "int_log", 2, 8192, default, tuple(grid))


def task_slice(group: str, grid: Sequence[int], parent: str = ARENA_PARENT) -> KnobRange:
    """The EEVDF slice (us) of every task of an arena group (sched_setattr; default: the 1400 us base slice)."""
    return KnobRange(f"task.cgroup:{parent}/{group}.slice_us", "int_log", 100, 20000, 1400, tuple(grid))


SLICE_GRID = (100, 300, 1400, 5000, 20000)
SLICE = KnobRange("kernel.sched_cfs_bandwidth_slice_us", "int", 1000, 20000, 5000, (1000, 20000))
AUTOGROUP = KnobRange("kernel.sched_autogroup_enabled", "bool", 0, 1, True, (False, True))


@dataclass(frozen=True)
class Scenario:
    """What changes half-way through a strategy run (``steady``: nothing)."""

    name: ScenarioName
    rate_hz: tuple[float, float] = (1000.0, 1000.0)
    """Probe request rate before and after the change."""
    neighbour: tuple[bool, bool] = (True, True)
    """Whether the neighbour runs before and after the change."""

    @property
    def phases(self) -> int:
        return 1 if self.name == "steady" else 2


STEADY = Scenario("steady")
SHIFT = Scenario("shift", rate_hz=(300.0, 1100.0))
ARRIVAL = Scenario("neighbour", neighbour=(False, True))


@dataclass(frozen=True)
class Problem:
    name: str
    title: str
    knobs: tuple[KnobRange, ...]
    scenario: Scenario = STEADY
    victim: VictimName = "probe"
    """The latency workload: the built-in probe (``rate_hz`` requests/s) or pgbench (``rate_hz`` tx/s)."""
    pgbench_clients: int = 4
    objective: Objective = "frac_over_slo"
    floor_fraction: float = 0.7
    slo_us: float = 1000.0
    work_us: float = 20.0
    batch_threads: int = 2
    neighbour_cpus: float = 0.9
    window_s: float = 3.0
    repeats: int = 1
    trials: int = 5
    sweep_repeats: int = 2
    eval_pairs: int = 5
    """Evaluation of each run's kept configuration: interleaved rounds (default and each kept one)."""
    eval_window_s: float = 10.0
    """Each evaluation window (long enough for the tail, unlike the search's ``window_s``)."""
    landscape: str = ""
    """The problem whose sweep scores this one's regret (itself when empty)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    parent: str = ARENA_PARENT
    """The parent cgroup of victim, batch and neighbour (the knobs' ids must name it)."""

    @property
    def knob_ids(self) -> tuple[str, ...]:
        return tuple(k.knob_id for k in self.knobs)

    @property
    def landscape_name(self) -> str:
        return self.landscape or self.name

    @property
    def cgroups(self) -> tuple[str, ...]:
        """The arena cgroups whose knobs this problem tunes (for ``ServiceConfig.cgroups``)."""
        return tuple(
            k.knob_id.split(".", 1)[1].rsplit(".", 1)[0].removeprefix("cgroup:")
            for k in self.knobs
            if k.knob_id.startswith(("cgroup.", "task.cgroup:"))
        )

    def defaults(self) -> Config:
        return {k.knob_id: k.default for k in self.knobs}

    def grid(self) -> list[Config]:
        return [
            dict(zip(self.knob_ids, values, strict=True)) for values in itertools.product(*(k.grid for k in self.knobs))
        ]

    def score(self, frac_over_slo: float, p99_us: float) -> float:
        """The objective (lower is better)."""
        return frac_over_slo if self.objective == "frac_over_slo" else p99_us

    def quick(self) -> Problem:
        """A cheaper copy for ``--quick``: fewer trials and a coarse 1-repeat grid."""
        knobs = tuple(
            KnobRange(
                k.knob_id, k.kind, k.low, k.high, k.default, tuple(dict.fromkeys((k.grid[0], k.default, k.grid[-1])))
            )
            for k in self.knobs
        )
        return dataclasses.replace(
            self, knobs=knobs, repeats=1, trials=4, sweep_repeats=1, eval_pairs=3, eval_window_s=self.window_s
        )


BATCH_GRID = (2, 16, 64, 256, 1024, 4096)
PGBENCH_RATE = 1200.0
"""pgbench's fixed rate (tx/s): about 0.55 CPU here, so with the batch job and the neighbour the
host is oversubscribed and pgbench's entitlement decides its tail (this-machine.md)."""

PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        Problem(
            "shares-1d",
            "1 knob: batch cpu.shares, probe + batch + neighbour, steady 1 kHz",
            (shares("batch", BATCH_GRID),),
        ),
        Problem(
            "shares-1d-85",
            "1 knob, floor 85%: the floor binds (same landscape as shares-1d)",
            (shares("batch", BATCH_GRID),),
            floor_fraction=0.85,
            landscape="shares-1d",
        ),
        Problem(
            "shares-2d",
            "2 knobs: batch and neighbour cpu.shares, steady 1 kHz",
            (shares("batch", (2, 64, 1024, 4096)), shares("neighbour", (2, 64, 1024, 4096))),
            sweep_repeats=1,
        ),
        Problem(
            "shares-distract",
            "1 knob + 2 distractors (cfs_bandwidth_slice_us, sched_autogroup_enabled)",
            (shares("batch", (2, 64, 1024)), SLICE, AUTOGROUP),
            floor_fraction=0.85,
        ),
        Problem(
            "shares-shift",
            "1 knob, rate shift 300 -> 1100 req/s half-way",
            (shares("batch", BATCH_GRID),),
            scenario=SHIFT,
            floor_fraction=0.85,
            landscape="shares-1d",
        ),
        Problem(
            "pgbench-1d",
            "PostgreSQL: pgbench at a fixed rate beside the batch job and the neighbour; batch cpu.shares",
            (shares("batch", BATCH_GRID),),
            scenario=Scenario("steady", rate_hz=(PGBENCH_RATE, PGBENCH_RATE)),
            victim="pgbench",
            floor_fraction=0.75,
            slo_us=5_000.0,
            window_s=4.0,
        ),
        Problem(
            "slice-1d",
            "1 knob: the victim's own EEVDF slice (sched_runtime), probe + batch + neighbour, steady 1 kHz",
            (task_slice("victim", SLICE_GRID),),
            sweep_repeats=6,
            notes=(
                "The seed's one-knob experiment (the CFS/EEVDF slice) done the way a locked-down 6.12+ kernel "
                "allows: per task through sched_setattr, base_slice_ns in debugfs being EPERM here.",
            ),
        ),
        Problem(
            "slice-1d-heavy",
            "1 knob: the victim's EEVDF slice, 200 us of work per request beside a 3-thread batch job",
            (task_slice("victim", (100, 1400, 20000)),),
            work_us=200.0,
            batch_threads=3,
            sweep_repeats=5,
            notes=("The issue's first, noisy try: heavier requests against more CPU-bound peers.",),
        ),
        Problem(
            "slice-2d",
            "2 knobs: the victim's EEVDF slice and the batch job's cpu.shares, steady 1 kHz",
            (task_slice("victim", (100, 1400, 20000)), shares("batch", (64, 256, 1024))),
            sweep_repeats=3,
        ),
        Problem(
            "shares-arrival",
            "1 knob, the neighbour arrives half-way",
            (shares("batch", BATCH_GRID),),
            scenario=ARRIVAL,
            floor_fraction=0.85,
            landscape="shares-1d",
        ),
    )
}


FULL_RUN = ("shares-1d", "shares-2d", "shares-distract", "shares-shift", "shares-arrival", "pgbench-1d")
"""What ``arena run`` runs without ``--problems`` (``shares-1d-85`` is extra: shares-1d at a binding floor)."""


def log_uniform(low: int, high: int, u: float) -> int:
    """Map ``u`` in [0, 1] to an integer log-uniformly in [low, high]."""
    return round(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))


__all__ = [
    "AUTOGROUP",
    "FULL_RUN",
    "ARRIVAL",
    "Config",
    "KnobRange",
    "PROBLEMS",
    "Problem",
    "SHIFT",
    "SLICE",
    "STEADY",
    "Scenario",
    "Value",
    "log_uniform",
    "shares",
    "task_slice",
]
