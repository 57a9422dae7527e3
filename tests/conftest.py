"""Shared fixtures. The guard: CI runs as root, so a test whose kernel root is the real
host fails unless it is marked ``live``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lumos_mcp.kernelfs import root as root_mod
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel, typical_host
from lumos_mcp.kernelfs.tasks import HostTasks
from lumos_mcp.knobs import default_catalog
from lumos_mcp.resources import policy_path
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.txn import TransactionManager
from tests.txn_helpers import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _guard_host_writes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any non-live test that writes through a KernelRoot at ``/``."""
    if request.node.get_closest_marker("live") is None:
        original = root_mod.KernelRoot.write_text

        def guarded(self: root_mod.KernelRoot, rel: str, value: str, *, knob: str | None = None) -> None:
            if self.is_host:
                pytest.fail(f"test wrote the real host ({rel}) without the live marker")
            original(self, rel, value, knob=knob)

        monkeypatch.setattr(root_mod.KernelRoot, "write_text", guarded)
        for method in ("setattr", "set_nice", "set_affinity"):  # task syscalls on real tasks

            def refuse(self: HostTasks, tid: int, *args: Any, _m: str = method) -> None:
                pytest.fail(f"test called {_m} on real task {tid} without the live marker")

            monkeypatch.setattr(HostTasks, method, refuse)
    yield


@pytest.fixture
def fake(tmp_path: Path) -> FakeKernel:
    """A fake of the reference host: EEVDF 6.18 with debugfs locked, cgroup v1, disk vda."""
    return typical_host(tmp_path / "kernel")


@pytest.fixture
def backend(fake: FakeKernel) -> Backend:
    """The kernel layer over the fake host, with the shipped catalog."""
    return Backend(fake.root, default_catalog())


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    """Where a transaction manager under test keeps its journal."""
    return tmp_path / "state" / "journal"


@pytest.fixture
def make_service(tmp_path: Path, fake: FakeKernel) -> Iterator[Callable[..., Service]]:
    """Build started services over the fake kernel ("live" mode writes the fake tree, never the host)."""
    made: list[Service] = []

    def factory(
        mode: str = "live", policy: str = "latency", clock: Callable[[], float] | None = None, **kw: Any
    ) -> Service:
        config = ServiceConfig(
            mode=mode,  # type: ignore[arg-type]
            state_dir=kw.pop("state_dir", tmp_path / "state"),
            policy=Path(policy) if policy.endswith(".toml") else policy_path(policy),
            host_root=fake.base,
            telemetry_root=Path("/"),
            cgroups=kw.pop("cgroups", ("batch",)),
            perf=kw.pop("perf", False),
            telemetry_interval_s=kw.pop("telemetry_interval_s", 0.2),
            **kw,
        )
        service = Service(config, clock=clock or time.time)
        service.start()
        made.append(service)
        return service

    yield factory
    for service in made:
        service.close()


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test sets by hand (``clock.now``, ``clock.advance``)."""
    return FakeClock()


@pytest.fixture
def manager(backend: Backend, journal_path: Path, clock: FakeClock) -> Iterator[TransactionManager]:
    """A transaction manager over the fake kernel, on the fake clock, closed after the test."""
    m = TransactionManager(backend, journal_path, clock=clock)
    yield m
    m.close()
