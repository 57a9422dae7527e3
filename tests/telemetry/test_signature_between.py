from __future__ import annotations

from pathlib import Path

import pytest
from telemetry_helpers import FakeClock

from lumos_mcp.errors import TelemetryNotReadyError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.telemetry import Telemetry

STAT = (
    "cpu  {u} 0 0 {i} 0 0 0 0 0 0\ncpu0 {u} 0 0 {i} 0 0 0 0 0 0\n"
    "ctxt {c}\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n"
)


def test_signature_between_two_wall_times_uses_only_the_samples_inside(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    clock = FakeClock()
    telemetry = Telemetry(fake.root, clock=clock, wall_clock=clock)
    for n, ctxt in enumerate([0, 100, 1100, 2100]):
        fake.file("proc/stat", STAT.format(u=100 * n, i=100 * n, c=ctxt))
        telemetry.sampler.sample_once()
        clock.advance(1.0)
    # samples at 1000, 1001, 1002, 1003: the span 1001..1003 saw 1000 switches per second
    sig = telemetry.signature_between(1000.5, 1003.0)
    assert sig.sched is not None and sig.sched.ctx_switches_per_s == pytest.approx(1000.0)
    assert sig.samples_used == 3 and sig.covered_s == pytest.approx(2.0)
    with pytest.raises(TelemetryNotReadyError):
        telemetry.signature_between(1000.5, 1001.5)
