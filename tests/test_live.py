"""Live tests: real writes of two harmless knobs on this host (root only), restored in
``finally`` whatever happens; plus proof that the host-write guard stops unmarked tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.knobs import default_catalog
from lumos_mcp.txn import TransactionManager, TxState

HOST_FILES = {
    "vm.swappiness": "proc/sys/vm/swappiness",
    "kernel.sched_rr_timeslice_ms": "proc/sys/kernel/sched_rr_timeslice_ms",
}
WORKTREE = Path(__file__).resolve().parent.parent


def _skip_unless_live() -> None:
    if os.geteuid() != 0:
        pytest.skip("live tests need root")
    for rel in HOST_FILES.values():
        path = Path("/", rel)
        if not path.exists() or not os.access(path, os.W_OK):
            pytest.skip(f"/{rel} is absent or read-only here")


def _host_text(rel: str) -> str:
    return Path("/", rel).read_text()


def _harmless_other(knob: str, value: int) -> int:
    if knob == "vm.swappiness":
        return value - 1 if value > 0 else 1
    return value - 4 if value > 4 else value + 4  # whole 4 ms ticks (HZ=250) for the RR slice


@pytest.fixture
def host_originals() -> Iterator[dict[str, str]]:
    """The two knobs' exact text before the test; written back directly afterwards if the
    manager left anything else (the journal in tmp_path is only the second net)."""
    _skip_unless_live()
    originals = {rel: _host_text(rel) for rel in HOST_FILES.values()}
    try:
        yield originals
    finally:
        for rel, text in originals.items():
            if _host_text(rel) != text:
                Path("/", rel).write_text(text.strip())


def _manager(tmp_path: Path) -> TransactionManager:
    return TransactionManager(Backend(KernelRoot("/"), default_catalog()), tmp_path / "journal")


def _targets(originals: dict[str, str]) -> dict[str, int]:
    return {knob: _harmless_other(knob, int(originals[rel])) for knob, rel in HOST_FILES.items()}


@pytest.mark.live
def test_live_apply_changes_the_host_and_revert_restores_it(tmp_path: Path, host_originals: dict[str, str]) -> None:
    manager = _manager(tmp_path)
    targets = _targets(host_originals)
    tx = manager.stage(targets)
    manager.apply(tx.id, confirm_within_s=60)
    assert {k: int(_host_text(rel)) for k, rel in HOST_FILES.items()} == targets
    _, results = manager.revert(tx.id)
    assert [r.action for r in results] == ["restored", "restored"]
    assert {rel: _host_text(rel) for rel in HOST_FILES.values()} == host_originals
    manager.close()


@pytest.mark.live
def test_live_commit_keeps_the_value_until_a_second_transaction_puts_it_back(
    tmp_path: Path, host_originals: dict[str, str]
) -> None:
    manager = _manager(tmp_path)
    targets = _targets(host_originals)
    tx = manager.apply(manager.stage(targets).id, confirm_within_s=60)
    assert manager.commit(tx.id).state is TxState.COMMITTED
    assert {k: int(_host_text(rel)) for k, rel in HOST_FILES.items()} == targets
    back = {knob: int(host_originals[rel]) for knob, rel in HOST_FILES.items()}
    manager.commit(manager.apply(manager.stage(back).id, confirm_within_s=60).id)
    assert {rel: _host_text(rel) for rel in HOST_FILES.values()} == host_originals
    manager.close()


@pytest.mark.live
def test_live_recovery_restores_what_a_dead_server_left_armed(tmp_path: Path, host_originals: dict[str, str]) -> None:
    dead = _manager(tmp_path)
    dead.apply(dead.stage(_targets(host_originals)).id, confirm_within_s=60)
    dead.close()  # gone without commit or revert, as after kill -9
    assert {rel: _host_text(rel) for rel in HOST_FILES.values()} != host_originals
    fresh = _manager(tmp_path)
    assert fresh.recover().clean
    assert {rel: _host_text(rel) for rel in HOST_FILES.values()} == host_originals
    fresh.close()


def test_the_guard_fails_an_unmarked_test_that_writes_the_host_root(tmp_path: Path) -> None:
    # The path cannot exist under /proc/sys, so even a broken guard writes nothing.
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    live: writes the host\n")
    (tmp_path / "conftest.py").write_text("from tests.conftest import _guard_host_writes  # noqa: F401\n")
    (tmp_path / "test_generated.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from lumos_mcp.errors import KnobUnavailableError
            from lumos_mcp.kernelfs import KernelRoot

            REL = "proc/sys/lumos-guard-check-never-exists"

            def test_unmarked_write():
                KernelRoot("/").write_text(REL, "1")

            @pytest.mark.live
            def test_marked_write():
                with pytest.raises(KnobUnavailableError):  # the guard let it through to the host root
                    KernelRoot("/").write_text(REL, "1")

            def test_unmarked_write_to_a_fake_tree(tmp_path):
                (tmp_path / "proc").mkdir()
                (tmp_path / "proc" / "x").write_text("0")
                KernelRoot(tmp_path).write_text("proc/x", "1")
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(WORKTREE)}
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    failures = {
        case.get("name"): [f.get("message", "") for f in case.iter("failure")]
        for case in ElementTree.parse(report).iter("testcase")
    }
    assert failures == {
        "test_unmarked_write": [
            "Failed: test wrote the real host (proc/sys/lumos-guard-check-never-exists) without the live marker"
        ],
        "test_marked_write": [],
        "test_unmarked_write_to_a_fake_tree": [],
    }
