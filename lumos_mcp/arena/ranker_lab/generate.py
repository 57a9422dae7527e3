"""Generate ranker training data on this host: arena workloads x knob settings x antagonist.

    python -m lumos_mcp.arena.ranker_lab.generate \\
        --workload probe --antagonist both --windows 25 --seed 1 --out data/ranker/windows.jsonl

Per window: apply a random configuration through a live `Service` (journaled, policy-checked,
reverted after the window), let it settle, sample the host's signature (`Telemetry`: /proc,
PSI, perf software events, the arena cgroups' CPU) around one measurement of the
application's true metric, and append one JSON line (see `dataset.py`).

Setup, the same for every workload, in sibling cgroups under ``lumos-arena/``:
- ``app``: the workload under test (its true metric is recorded);
- ``other``: a 2-thread CPU-bound co-runner (sysbench cpu), whose knobs make the trade-off;
- ``antagonist`` (when on): an untuned 0.9-CPU neighbour (duty-cycled spinner).

Knobs moved: ``other``'s ``cpu_shares`` (log-spaced 64..8192) or ``cpu_idle``, and ``app``'s
``cpu_max`` (none, 1.5, 1.0 or 0.6 CPU). Every knob is restored by reverting its transaction
and every cgroup is removed on exit, also on errors. Needs root; live writes to the host.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lumos_mcp.arena import procs
from lumos_mcp.arena.workloads import (
    ArenaCgroups,
    BatchWorkload,
    NeighbourWorkload,
    ProbeWorkload,
    find_tool,
    noise_cpu,
)
from lumos_mcp.errors import WorkloadError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.cgroups import CgroupManager
from lumos_mcp.ranker.dataset import RECORD_FORMAT, Metric, WindowRecord, append_records
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.telemetry.facade import Telemetry
from lumos_mcp.telemetry.metrics import flatten
from lumos_mcp.telemetry.perf import PerfStat

log = logging.getLogger("lumos_mcp.arena.ranker_lab.generate")

WORKLOADS = ("probe", "batch", "vm")
APP, OTHER, ANTAGONIST = "app", "other", "antagonist"
SHARES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
QUOTAS = ("max 100000", "150000 100000", "100000 100000", "60000 100000")
_SNG_RE = re.compile(r"\bvm\s+\d+\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)")

Config = dict[str, int | bool | str]


def knob(group: str, name: str) -> str:
    return f"cgroup.lumos-arena/{group}.{name}"


KNOBS = (knob(OTHER, "cpu_shares"), knob(OTHER, "cpu_idle"), knob(APP, "cpu_max"))


def generator_policy() -> str:
    """The policy the generator's Service runs under: only the arena's own cgroup knobs, no
    approval, no cooldown (each window's change is reverted before the next one)."""
    rules = {
        knob(OTHER, "cpu_shares"): 'min = 2\nmax = 262144\napproval = "never"\ncooldown_s = 0',
        knob(OTHER, "cpu_idle"): 'approval = "never"\ncooldown_s = 0',
        knob(APP, "cpu_max"): 'allow_unlimited = true\nmin_quota_ratio = 0.1\napproval = "never"\ncooldown_s = 0',
    }
    head = (
        'name = "ranker-generate"\n'
        'description = "Ranker data generation: the arena cgroups only, reverted after every window."\n\n'
        "[global]\nconfirm_within_s = 600\nmax_confirm_within_s = 900\napproval_lifetime_s = 60\n"
        "commits_per_hour = 100000\n"
    )
    return head + "".join(f'\n[knobs."{k}"]\n{v}\n' for k, v in rules.items())


def random_config(rng: random.Random) -> Config:
    """A configuration: the co-runner's weight (or SCHED_IDLE) and the app's CPU limit."""
    config: Config = {}
    if rng.random() < 0.2:
        config[knob(OTHER, "cpu_idle")] = True
    else:
        config[knob(OTHER, "cpu_shares")] = rng.choice(SHARES)
    config[knob(APP, "cpu_max")] = rng.choices(QUOTAS, weights=(4, 2, 2, 2))[0]
    return config


def to_changes(config: Config, defaults: Config) -> Config:
    """Only what differs from the defaults (shares before idle never arises: idle replaces shares)."""
    return {k: v for k, v in config.items() if defaults.get(k) != v}


# ---------------------------------------------------------------------------- the app under test
class _VmApp:
    """stress-ng --vm, one run per window: bogo ops/s (real time), higher is better."""

    def __init__(self, cgroups: CgroupManager, cgroup: str) -> None:
        self.cgroups = cgroups
        self.cgroup = cgroup
        path = find_tool("stress-ng")
        if path is None:
            raise WorkloadError("stress-ng is not installed (apt-get install -y stress-ng)", workload="vm")
        self.path = path

    def measure(self, window_s: float) -> float:
        argv = [self.path, "--vm", "2", "--vm-bytes", "192M", "--timeout", f"{window_s:g}s", "--metrics-brief"]
        proc = procs.spawn(argv, workload="vm", cgroups=self.cgroups, cgroup=self.cgroup, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=window_s + 30)
        finally:
            procs.stop(proc, grace_s=1.0)
        m = _SNG_RE.search(out.decode(errors="replace"))
        if proc.returncode != 0 or m is None:
            raise WorkloadError(f"stress-ng failed ({proc.returncode})", workload="vm")
        return float(m.group(1))


@contextlib.contextmanager
def app_under_test(workload: str, cgroups: CgroupManager, cgroup: str) -> Iterator[Callable[[float], Metric]]:
    """Start the workload; yield ``measure(window_s) -> Metric``; stop it."""
    if workload == "probe":
        with ProbeWorkload(1000, 20, cgroup=cgroup, cgroups=cgroups) as probe:
            yield lambda w: Metric(name="p99_us", value=probe.measure(w).p99_us, higher_is_better=False)
    elif workload == "batch":
        with BatchWorkload(2, cgroup=cgroup, cgroups=cgroups) as batch:
            yield lambda w: Metric(name="events_per_s", value=batch.measure(w), higher_is_better=True)
    elif workload == "vm":
        vm = _VmApp(cgroups, cgroup)
        yield lambda w: Metric(name="bogo_ops_per_s", value=vm.measure(w), higher_is_better=True)
    else:
        raise ValueError(f"unknown workload {workload!r}; choose from {WORKLOADS}")


@contextlib.contextmanager
def applied(service: Service, changes: Config) -> Iterator[None]:
    """Apply ``changes`` through the service's journal for the block, then revert them."""
    if not changes:
        yield
        return
    staged = service.stage(changes, actor="ranker-generate")
    service.apply(staged.tx.id, actor="ranker-generate")
    try:
        yield
    finally:
        service.revert(staged.tx.id, actor="ranker-generate")


# ---------------------------------------------------------------------------- one chunk
def run_chunk(
    workload: str,
    antagonist: bool,
    windows: int,
    rng: random.Random,
    out: Path,
    window_s: float = 5.0,
    settle_s: float = 1.0,
    chunk: str = "",
) -> int:
    """Measure ``windows`` windows of one workload, with or without the antagonist. Returns how many were written.

    Raises:
        WorkloadError, CgroupError, LumosError: the arena or a knob write failed (everything is undone first).
    """
    root = KernelRoot("/")
    cg = CgroupManager(root)
    names = [APP, OTHER] + ([ANTAGONIST] if antagonist else [])
    written = 0
    with tempfile.TemporaryDirectory(prefix="lumos-ranker-gen-") as state, ArenaCgroups(cg, names) as groups:
        policy = Path(state) / "policy.toml"
        policy.write_text(generator_policy())
        perf = PerfStat(interval_ms=500) if find_tool("perf") else None
        service = Service(
            ServiceConfig(
                mode="live",
                state_dir=Path(state) / "state",
                policy=policy,
                cgroups=(groups[APP], groups[OTHER]),
                perf=False,
            )
        )
        service.start()
        telemetry = Telemetry(root, interval_s=1.0, cgroups=(groups[APP], groups[OTHER]), perf=perf)
        defaults: Config = {k: service.backend.read(k).value for k in KNOBS}
        try:
            if perf is not None:
                perf.start()
            with contextlib.ExitStack() as stack:
                stack.enter_context(BatchWorkload(2, cgroup=groups[OTHER], cgroups=cg))
                if antagonist:
                    stack.enter_context(NeighbourWorkload(0.9, cgroup=groups[ANTAGONIST], cgroups=cg))
                measure = stack.enter_context(app_under_test(workload, cg, groups[APP]))
                measure(2.0)  # warm-up, discarded
                for i in range(windows):
                    config = random_config(rng)
                    with applied(service, to_changes(config, defaults)):
                        time.sleep(settle_s)
                        a = telemetry.sampler.sample_once()
                        with noise_cpu(cg, [groups.parent]) as nw:
                            metric = measure(window_s)
                        b = telemetry.sampler.sample_once()
                        sig = telemetry.signature(b.t - a.t + 1e-6)
                    full = {**defaults, **config}
                    if full.get(knob(OTHER, "cpu_idle")):
                        full.pop(knob(OTHER, "cpu_shares"), None)
                    record = WindowRecord(
                        format=RECORD_FORMAT,
                        workload=workload,
                        antagonist=antagonist,
                        config={k.removeprefix("cgroup.lumos-arena/"): v for k, v in full.items()},
                        metric=metric,
                        window_s=sig.covered_s,
                        noise_cpus=nw.report.noise_cpus,
                        start_unix_s=sig.start_unix_s,
                        chunk=chunk,
                        features={k: float(f"{v:.6g}") for k, v in flatten(sig.model_dump()).items()},
                    )
                    append_records(out, [record])
                    written += 1
                    log.info(
                        "%s antagonist=%s %d/%d %s %s=%.1f noise=%.2f",
                        workload,
                        antagonist,
                        i + 1,
                        windows,
                        config,
                        metric.name,
                        metric.value,
                        nw.report.noise_cpus,
                    )
        finally:
            if perf is not None:
                perf.stop()
            service.close()
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lumos_mcp.arena.ranker_lab.generate", description=__doc__.split("\n")[0]
    )
    p.add_argument("--workload", choices=WORKLOADS, required=True)
    p.add_argument("--antagonist", choices=("on", "off", "both"), default="both")
    p.add_argument("--windows", type=int, default=25, help="windows per antagonist setting")
    p.add_argument("--window-s", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    if os.geteuid() != 0:
        print("needs root: it writes cgroup knobs on this host", file=sys.stderr)
        return 2
    rng = random.Random(f"{args.seed}-{args.workload}-{args.antagonist}")
    settings = {"on": [True], "off": [False], "both": [False, True]}[args.antagonist]
    for antagonist in settings:
        chunk = f"{args.workload}-{'ant' if antagonist else 'solo'}-s{args.seed}"
        run_chunk(args.workload, antagonist, args.windows, rng, args.out, window_s=args.window_s, chunk=chunk)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
