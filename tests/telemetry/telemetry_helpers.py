"""Helpers for telemetry tests: a settable clock and kernel trees built from recorded texts."""

from __future__ import annotations

import shutil
from pathlib import Path

from lumos_mcp.kernelfs.fake import FakeKernel

DATA = Path(__file__).resolve().parent.parent / "data" / "proc"


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def recorded_tree(base: Path, kernel: str, release: str | None = None) -> FakeKernel:
    """A fake kernel whose /proc holds the texts recorded under ``tests/data/proc/<kernel>``."""
    fake = FakeKernel(base, release=release or kernel.split("-")[0] + ".0-recorded")
    shutil.copytree(DATA / kernel, base / "proc", dirs_exist_ok=True, ignore=shutil.ignore_patterns("README"))
    return fake
