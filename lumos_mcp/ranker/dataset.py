"""The ranker's dataset: one JSON line per measured window.

Record format ``lumos-ranker-window/1``::

    {"format": "lumos-ranker-window/1",
     "workload": "probe",                 # probe | batch | vm (the arena app under test)
     "antagonist": false,                 # was the untuned 0.9-CPU neighbour running?
     "config": {"other.cpu_shares": 256, "other.cpu_idle": false, "app.cpu_max": "max 100000"},
     "metric": {"name": "p99_us", "value": 412.0, "higher_is_better": false},
     "window_s": 5.5,                     # the signature's covered seconds
     "noise_cpus": 0.02,                  # CPUs used outside the arena during the window
     "start_unix_s": 1795511804.1,
     "chunk": "probe-solo-s1",            # the generator run that wrote it
     "features": {"cpu.total.util_pct": 98.1, "sched.ctx_switches_per_s": 5123.0, ...}}

``features`` is `lumos_mcp.telemetry.metrics.flatten` of the window's `Signature` (every
numeric leaf; what the host could not measure is absent). Pairs are formed only between
windows of the same workload and antagonist setting: comparing a p99 with an events/s is
meaningless, and a pair across antagonist settings would teach the antagonist, not the knob.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECORD_FORMAT = "lumos-ranker-window/1"


@dataclass(frozen=True)
class Metric:
    """The application's true metric for a window (never a ranker input)."""

    name: str
    value: float
    higher_is_better: bool

    def better_than(self, other: Metric) -> bool:
        return self.value > other.value if self.higher_is_better else self.value < other.value


@dataclass(frozen=True)
class WindowRecord:
    format: str
    workload: str
    antagonist: bool
    config: dict[str, Any]
    metric: Metric
    window_s: float
    noise_cpus: float
    start_unix_s: float
    chunk: str
    features: dict[str, float] = field(repr=False)

    @property
    def group(self) -> tuple[str, bool]:
        """Windows comparable with each other: same workload, same antagonist setting."""
        return (self.workload, self.antagonist)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowRecord:
        """Raises:
        ValueError: another format, or a field missing or of the wrong type.
        """
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"not a {RECORD_FORMAT} record: format={data.get('format')!r}")
        try:
            m = data["metric"]
            return cls(
                format=RECORD_FORMAT,
                workload=str(data["workload"]),
                antagonist=bool(data["antagonist"]),
                config=dict(data["config"]),
                metric=Metric(str(m["name"]), float(m["value"]), bool(m["higher_is_better"])),
                window_s=float(data["window_s"]),
                noise_cpus=float(data["noise_cpus"]),
                start_unix_s=float(data["start_unix_s"]),
                chunk=str(data.get("chunk", "")),
                features={str(k): float(v) for k, v in data["features"].items()},
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"bad {RECORD_FORMAT} record: {e!r}") from e


def append_records(path: Path, records: Iterable[WindowRecord]) -> None:
    """Append records as JSON lines (flushed and fsynced: a generator may be interrupted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for r in records:
            f.write(r.to_json() + "\n")
        f.flush()
        os.fsync(f.fileno())


def load_records(*paths: Path) -> list[WindowRecord]:
    """Every record of the JSON-lines files, in order.

    Raises:
        ValueError: a line is not a valid record (with its file and line number).
        OSError: a file cannot be read.
    """
    out = []
    for path in paths:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(WindowRecord.from_dict(json.loads(line)))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: {e}") from e
    return out


def data_hash(records: Sequence[WindowRecord]) -> str:
    """sha256 over the records' canonical JSON: names the training data in a model's manifest."""
    h = hashlib.sha256()
    for r in records:
        h.update(r.to_json().encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class Pair:
    """Two comparable windows; ``label`` is 1 when ``a`` is truly better than ``b``."""

    a: WindowRecord
    b: WindowRecord
    label: int


def pairs(records: Sequence[WindowRecord], min_gap: float = 0.05) -> Iterator[Pair]:
    """Every ordered pair of windows in the same group whose true metrics differ by more than
    ``min_gap`` (relative): closer pairs are ties within measurement noise and are left out, as are
    windows without a finite metric.
    Both orders are produced, so labels are balanced.
    """
    by_group: dict[tuple[str, bool], list[WindowRecord]] = {}
    for r in records:
        if not math.isfinite(r.metric.value):
            continue  # a window whose metric could not be measured
        by_group.setdefault(r.group, []).append(r)
    for group in sorted(by_group):
        for a, b in itertools.combinations(by_group[group], 2):
            va, vb = a.metric.value, b.metric.value
            scale = max(abs(va), abs(vb), 1e-12)
            if abs(va - vb) / scale <= min_gap:
                continue
            better = int(a.metric.better_than(b.metric))
            yield Pair(a, b, better)
            yield Pair(b, a, 1 - better)


def quiet_records(records: Iterable[WindowRecord], max_noise_cpus: float) -> list[WindowRecord]:
    """The windows where something outside the arena used at most ``max_noise_cpus`` CPUs."""
    return [r for r in records if r.noise_cpus <= max_noise_cpus]
