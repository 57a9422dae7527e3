"""Properties of task knobs on the fake task table: a selector never touches a task outside it,
and any sequence of applies, forks, exits and (last-in first-out) reverts gives every task
that lived through it its original value back."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumos_mcp.errors import ConflictError
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel, typical_host
from lumos_mcp.knobs import default_catalog
from lumos_mcp.txn.manager import Transaction, TransactionManager

COMMS = ("cruncher", "crumbler", "probe-srv", "postgres")
CGROUPS = ("", "batch", "web")
SELECTORS = ("cgroup:batch", "cgroup:web", "comm:cru*", "comm:probe-srv", "comm:post?res", "comm:cruncher")
ATTRS = {"nice": st.integers(-20, 19).map(str), "slice_us": st.integers(100, 5000).map(str)}

task_rows = st.lists(
    st.tuples(st.sampled_from(COMMS), st.sampled_from(CGROUPS), st.integers(-5, 5), st.integers(1, 30)),
    min_size=1,
    max_size=8,
)


def _host(base: Path, rows: list[tuple[str, str, int, int]]) -> FakeKernel:
    fake = typical_host(base)
    fake.cgroup_v1("web")
    for n, (comm, cgroup, nice, slice_100us) in enumerate(rows):
        fake.task(100 + n, comm=comm, cgroup=cgroup, nice=nice, slice_ns=slice_100us * 100_000)
    return fake


def _selected(task: dict[str, Any], selector: str) -> bool:
    kind, _, value = selector.partition(":")
    if kind == "cgroup":
        return bool(task["cgroup"] == value)
    import fnmatch

    return fnmatch.fnmatchcase(task["comm"], value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=task_rows, selector=st.sampled_from(SELECTORS), attr=st.sampled_from(sorted(ATTRS)), data=st.data())
def test_a_change_touches_only_the_tasks_its_selector_picks_and_revert_restores_them(
    rows: list[tuple[str, str, int, int]], selector: str, attr: str, data: st.DataObject
) -> None:
    value = data.draw(ATTRS[attr])
    with tempfile.TemporaryDirectory() as tmp:
        fake = _host(Path(tmp) / "k", rows)
        before = fake.tasks.load()["tasks"]
        manager = TransactionManager(Backend(fake.root, default_catalog()), Path(tmp) / "journal")
        if not any(_selected(t, selector) for t in before.values()):
            return  # the no-match error has its own test
        tx = manager.stage({f"task.{selector}.{attr}": int(value)})
        manager.apply(tx.id, 600)
        after = fake.tasks.load()["tasks"]
        for tid, task in before.items():
            if not _selected(task, selector):
                assert after[tid] == task
            else:
                got = after[tid]["nice"] if attr == "nice" else after[tid]["slice_ns"] // 1000
                assert str(got) == value
        manager.revert(tx.id)
        assert fake.tasks.load()["tasks"] == before


step = st.one_of(
    st.tuples(st.just("apply"), st.sampled_from(SELECTORS), st.sampled_from(sorted(ATTRS)), st.integers(-20, 19)),
    st.tuples(st.just("fork"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("exit"), st.integers(0, 50)),
    st.tuples(st.just("revert_last")),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=task_rows, steps=st.lists(step, max_size=8))
def test_any_sequence_of_applies_forks_exits_and_reverts_gives_survivors_their_originals(
    rows: list[tuple[str, str, int, int]], steps: list[tuple[Any, ...]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fake = _host(Path(tmp) / "k", rows)
        original = fake.tasks.load()["tasks"]
        manager = TransactionManager(Backend(fake.root, default_catalog()), Path(tmp) / "journal")
        applied: list[Transaction] = []
        next_tid = 500
        for s in steps:
            live = sorted(int(t) for t in fake.tasks.load()["tasks"])
            if s[0] == "apply":
                _, selector, attr, number = s
                value = number if attr == "nice" else 100 + abs(number) * 100
                if not any(_selected(t, selector) for t in fake.tasks.load()["tasks"].values()):
                    continue
                tx = manager.stage({f"task.{selector}.{attr}": value})
                try:
                    manager.apply(tx.id, 600)
                except ConflictError:
                    continue
                applied.append(tx)
            elif s[0] == "fork" and live:
                fake.fork(live[s[1] % len(live)], next_tid, thread=s[2])
                next_tid += 1
            elif s[0] == "exit" and live:
                fake.exit(live[s[1] % len(live)])
            elif s[0] == "revert_last" and applied:
                manager.revert(applied.pop().id)
        while applied:
            _, results = manager.revert(applied.pop().id)
            assert all(r.action in ("restored", "unchanged") for r in results)
        now = fake.tasks.load()["tasks"]
        for tid, task in now.items():
            if tid in original:
                assert task == original[tid]
