"""Invariant 4, with real processes: kill -9 at every probe point of apply, commit, revert,
rollback, auto-revert, guard revert and recovery itself (task knobs: between tasks too); the next
start restores every knob of an uncommitted transaction to its exact original text (a task knob:
every task's own attributes, the fake's whole task table byte for byte), and committed changes
stay."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import typical_host
from lumos_mcp.kernelfs.tasks import TASKS_FILE
from lumos_mcp.knobs import default_catalog
from lumos_mcp.txn import TransactionManager
from tests.crash_worker import CHANGE, FAILING_FILE, SCENARIOS, add_tasks

WORKER = Path(__file__).with_name("crash_worker.py")
DURABLE_COMMIT = "commit:after-record"
# crashed states whose recovery is itself killed at every probe: (scenario, label killed at)
RECOVERY_BASES = [
    ("apply", "apply:after-armed"),
    ("apply", "apply:after-file:1:0"),  # between the two files of cgroup.batch.cpu_max
    ("revert", "rollback:after-restore:2"),
    ("fail", "rollback:after-restore:1"),
    ("compact", "compact:after-rename"),  # the journal was just compacted while CHANGE is open
]


@dataclass
class Outcome:
    scenario: str
    label: str
    crashed: list[str]  # the knob files just after the kill
    recovered: list[str]  # the knob files after a fresh manager's recover()
    clean: bool
    second_pass: tuple[str, ...]  # transactions a second recover() still found


def prepare(directory: Path, scenario: str) -> list[str]:
    fake = typical_host(directory / "kernel")
    add_tasks(fake)
    if scenario == "fail":
        fake.rule(FAILING_FILE, reject=["25"])
    backend = Backend(fake.root, default_catalog())
    # a task knob's "file" is its selector; what it changes is the fake's task table
    return [f for knob in CHANGE for f in (backend.resolve(knob).files if "task." not in knob else (TASKS_FILE,))]


def read_files(directory: Path, files: list[str]) -> list[str]:
    return [(directory / "kernel" / f).read_text() for f in files]


def run_worker(directory: Path, scenario: str, kill_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), str(directory), scenario, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def recover_in_process(directory: Path, scenario: str, label: str, files: list[str]) -> Outcome:
    crashed = read_files(directory, files)
    backend = Backend(KernelRoot(directory / "kernel"), default_catalog())
    manager = TransactionManager(backend, directory / "journal")
    report = manager.recover()
    clean = report.clean and manager.journal_problem is None
    again = manager.recover()
    manager.close()
    return Outcome(scenario, label, crashed, read_files(directory, files), clean, again.transactions)


def kill_and_recover(directory: Path, scenario: str, kill_at: int, files: list[str]) -> Outcome:
    """Run the worker until it kills itself at probe ``kill_at``, then recover here."""
    done = run_worker(directory, scenario, kill_at)
    assert done.returncode == -signal.SIGKILL, (scenario, kill_at, done.returncode, done.stderr[-2000:])
    label = (directory / "killed-at").read_text()
    return recover_in_process(directory, scenario, label, files)


def complete_run(directory: Path, scenario: str) -> tuple[list[str], list[str]]:
    """Run a scenario to its end: the labels it passes and the knob files it leaves."""
    files = prepare(directory, scenario)
    done = run_worker(directory, scenario, 0)
    assert done.returncode == 0, done.stderr[-2000:]
    labels: list[str] = json.loads(done.stdout)
    return labels, read_files(directory, files)


def test_invariant_4_kill_at_any_point_restores_originals_on_next_start(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=4)
    try:
        # 1. each scenario once to its end: its probe labels, and what it leaves behind
        labels: dict[str, list[str]] = {}
        originals: list[str] = []
        committed: list[str] = []
        for scenario in SCENARIOS:
            directory = tmp_path / scenario / "complete"
            files = prepare(directory, scenario)
            originals = read_files(directory, files)
            labels[scenario], left = complete_run(tmp_path / scenario / "run", scenario)
            if scenario == "commit":
                committed = left
            expected = committed if scenario == "commit" else originals
            outcome = recover_in_process(tmp_path / scenario / "run", scenario, "(completed)", files)
            assert outcome.recovered == expected, scenario
        assert committed != originals
        assert DURABLE_COMMIT in labels["commit"]

        # 2. kill at every probe of every scenario, recover, compare exactly
        jobs = []
        for scenario in SCENARIOS:
            for n in range(1, len(labels[scenario]) + 1):
                directory = tmp_path / scenario / str(n)
                files = prepare(directory, scenario)
                jobs.append(pool.submit(kill_and_recover, directory, scenario, n, files))
        outcomes = [job.result() for job in jobs]

        # 3. kill recovery itself at every probe, after a few crashed states
        recovery_jobs = []
        for scenario, at in RECOVERY_BASES:
            base = tmp_path / "recovery" / f"{scenario}-{at.replace(':', '_')}"
            files = prepare(base, scenario)
            crash = run_worker(base, scenario, labels[scenario].index(at) + 1)
            assert crash.returncode == -signal.SIGKILL
            probe = base.with_name(base.name + "-complete")
            shutil.copytree(base, probe)
            recover_labels = json.loads(run_worker(probe, "recover", 0).stdout)
            assert recover_labels, f"recovery after {at} passed no probe"
            for n in range(1, len(recover_labels) + 1):
                directory = base.with_name(f"{base.name}-{n}")
                shutil.copytree(base, directory)
                recovery_jobs.append(pool.submit(kill_and_recover, directory, "recover", n, files))
            outcomes_for_base = [job.result() for job in recovery_jobs[-len(recover_labels) :]]
            for o in outcomes_for_base:
                o.scenario = f"recover-after-{scenario}@{at}"
            outcomes.extend(outcomes_for_base)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    for o in outcomes:
        durable = o.scenario == "commit" and labels["commit"].index(o.label) >= labels["commit"].index(DURABLE_COMMIT)
        expected = committed if durable else originals
        assert o.recovered == expected, (o.scenario, o.label, o.crashed)
        assert o.clean, (o.scenario, o.label)
        assert o.second_pass == (), (o.scenario, o.label)
    # the kills really left knobs changed for recovery to undo, in every scenario
    for scenario in [*SCENARIOS, *{o.scenario for o in outcomes if o.scenario.startswith("recover")}]:
        assert any(o.crashed != originals for o in outcomes if o.scenario == scenario), scenario

    kill_points = {(o.scenario, o.label) for o in outcomes}
    elapsed = time.monotonic() - started
    record_property("kill_points", len(kill_points))
    print(f"\ncrash test: {len(kill_points)} distinct kill points, {len(outcomes)} kills, {elapsed:.1f} s")
    assert len(kill_points) >= 50
