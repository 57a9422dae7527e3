"""The background sampler: reads a snapshot every ``interval_s`` into a ring buffer.

File reads run in a worker thread (``anyio.to_thread.run_sync``), so the event loop never
blocks on /proc. Snapshot times come from the injected ``clock``; sleeping uses the event
loop's own clock, so a fake clock in tests changes the rates, not the pacing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import anyio

from lumos_mcp.errors import InvalidTelemetryRequestError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.telemetry.metrics import interval_metrics
from lumos_mcp.telemetry.readers import Snapshot, check_cgroup_name, read_snapshot

Clock = Callable[[], float]


class Sampler:
    """A ring buffer of snapshots of ``root``, filled by ``run()`` or ``sample_once()``."""

    def __init__(
        self,
        root: KernelRoot,
        interval_s: float = 1.0,
        capacity: int = 3600,
        clock: Clock = time.monotonic,
        cgroups: Sequence[str] = (),
        wall_clock: Clock = time.time,
    ) -> None:
        """
        Raises:
            InvalidTelemetryRequestError: ``interval_s`` not positive or ``capacity`` below 2.
            InvalidParameterError: a malformed cgroup name.
        """
        if not interval_s > 0:
            raise InvalidTelemetryRequestError("must be > 0", parameter="interval_s", value=interval_s)
        if capacity < 2:
            raise InvalidTelemetryRequestError("must be at least 2", parameter="capacity", value=capacity)
        self.root = root
        self.interval_s = float(interval_s)
        self.capacity = capacity
        self.clock = clock
        self.wall_clock = wall_clock
        self.cgroups = tuple(check_cgroup_name(c) for c in cgroups)
        self._buffer: deque[Snapshot] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._new_sample: anyio.Event | None = None

    # ------------------------------------------------------------------ sampling
    def read(self) -> Snapshot:
        """Read one snapshot without storing it (blocking: call from a worker thread)."""
        return read_snapshot(self.root, self.clock(), self.wall_clock(), self.cgroups)

    def push(self, snapshot: Snapshot) -> None:
        """Append a snapshot (the oldest falls out when the buffer is full).

        Raises:
            InvalidTelemetryRequestError: the snapshot is not later than the newest one.
        """
        with self._lock:
            if self._buffer and snapshot.t <= self._buffer[-1].t:
                raise InvalidTelemetryRequestError(
                    "snapshot is not later than the newest one", parameter="snapshot.t", value=snapshot.t
                )
            self._buffer.append(snapshot)

    def sample_once(self) -> Snapshot:
        """Read and store one snapshot now (blocking; for tests and for the first sample).

        Raises:
            InvalidTelemetryRequestError: the clock did not advance since the newest snapshot.
        """
        snapshot = self.read()
        self.push(snapshot)
        return snapshot

    async def run(self) -> None:
        """Sample every ``interval_s`` until cancelled (start it in a task group)."""
        while True:
            started = anyio.current_time()
            snapshot = await anyio.to_thread.run_sync(self.read)
            # a clock that did not advance (coarse or fake) makes push refuse: drop the sample, keep sampling
            with contextlib.suppress(InvalidTelemetryRequestError):
                self.push(snapshot)
            if self._new_sample is not None:
                self._new_sample.set()
                self._new_sample = None
            await anyio.sleep(max(0.0, self.interval_s - (anyio.current_time() - started)))

    async def wait_for_sample(self, after_t: float) -> Snapshot:
        """Wait for a snapshot taken later than ``after_t`` (clock seconds); unbounded, so the
        caller bounds it (``anyio.fail_after``)."""
        while True:
            newest = self.latest()
            if newest is not None and newest.t > after_t:
                return newest
            if self._new_sample is None:
                self._new_sample = anyio.Event()
            # a push from sample_once (another thread) does not set the event: re-check each interval
            with anyio.move_on_after(self.interval_s):
                await self._new_sample.wait()

    # ------------------------------------------------------------------ reading the buffer
    def samples(self, since: float | None = None) -> list[Snapshot]:
        """Stored snapshots, oldest first; with ``since``, those with ``t >= since``."""
        with self._lock:
            items = list(self._buffer)
        if since is None:
            return items
        return [s for s in items if s.t >= since]

    def newest(self, n: int, after_wall: float | None = None) -> list[Snapshot]:
        """The newest ``n`` snapshots, oldest first, read from the end of the buffer (no copy of
        the whole ring); with ``after_wall``, only those taken after that wall-clock time plus the
        one just before them (the first of a pair)."""
        out: list[Snapshot] = []
        with self._lock:
            for snap in reversed(self._buffer):
                if len(out) >= n:
                    break
                out.append(snap)
                if after_wall is not None and snap.wall <= after_wall:
                    break
        out.reverse()
        return out

    def latest(self) -> Snapshot | None:
        with self._lock:
            return self._buffer[-1] if self._buffer else None

    def window(self, window_s: float) -> list[Snapshot]:
        """The snapshots of the last ``window_s`` seconds, ending with the newest.

        A tenth of an interval of slack (as ``Telemetry.fresh_signature`` allows): samples come
        a little late, so without it a window of one interval would often hold one snapshot.
        """
        newest = self.latest()
        if newest is None:
            return []
        return self.samples(since=newest.t - window_s - 0.1 * self.interval_s - 1e-9)

    def rates(self, window_s: float | None = None) -> dict[str, float]:
        """Flat metrics between the oldest snapshot of the window (or of the buffer) and the newest;
        ``{}`` with fewer than two snapshots."""
        snaps = self.samples() if window_s is None else self.window(window_s)
        if len(snaps) < 2:
            return {}
        return interval_metrics(snaps[0], snaps[-1])
