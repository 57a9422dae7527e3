"""``perf stat -a -I <ms> -x, -e <events>`` as a long-lived subprocess, parsed as it streams.

perf writes its CSV records to stderr, one line per event per interval::

    1.001086085,101,,context-switches,2002505141,100.00,50.437,/sec
    1.001086085,<not supported>,,cycles,0,100.00,,

Fields: time, count, unit, event, run time, run %, metric, metric unit. A reader thread
groups the lines of one interval and keeps per-event rates (count per second; task-clock
as CPUs busy). Everything that is not available says why in ``unavailable``: perf not
installed, forbidden (perf_event_paranoid, missing capability), an event the CPU does not
support. Nothing here raises because perf is absent: telemetry degrades.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from lumos_mcp.errors import InvalidTelemetryRequestError

SOFTWARE_EVENTS = ("context-switches", "cpu-migrations", "page-faults", "task-clock")
HARDWARE_EVENTS = ("cycles", "instructions", "cache-misses", "LLC-load-misses")
DEFAULT_EVENTS = SOFTWARE_EVENTS + HARDWARE_EVENTS
NOT_COUNTED = ("<not supported>", "<not counted>")
_EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:/=-]+$")
_FORBIDDEN = ("perf_event_paranoid", "Permission denied", "Access to performance monitoring", "not permitted")


@dataclass(frozen=True)
class PerfRecord:
    """One CSV line: ``count`` is ``None`` when perf printed ``<not supported>``/``<not counted>``."""

    time_s: float | None
    event: str
    count: float | None
    unit: str
    status: str


def parse_perf_line(line: str, interval: bool = True) -> PerfRecord | None:
    """One ``perf stat -x,`` line as a record; ``None`` for anything else (comments, messages).

    With ``interval`` (``-I``) the first field is the time since perf started, in seconds.
    """
    fields = line.rstrip("\n").split(",")
    time_s: float | None = None
    if interval:
        if len(fields) < 4:
            return None
        try:
            time_s = float(fields[0])
        except ValueError:
            return None
        fields = fields[1:]
    if len(fields) < 3 or not fields[2]:
        return None
    raw, unit, event = fields[0].strip(), fields[1].strip(), fields[2].strip()
    if raw in NOT_COUNTED:
        return PerfRecord(time_s, event, None, unit, raw)
    try:
        count = float(raw)
    except ValueError:
        return None
    return PerfRecord(time_s, event, count, unit, "counted")


@dataclass(frozen=True)
class PerfInterval:
    """One completed interval: ``t`` on the owner's clock when it completed, its length in s,
    counts per event (task-clock in ms) and per-event rates (per second; task-clock in CPUs)."""

    t: float
    length_s: float
    counts: MappingProxyType[str, float]
    rates: MappingProxyType[str, float]


@dataclass
class _Pending:
    time_s: float
    records: list[PerfRecord] = field(default_factory=list)


class PerfStat:
    """A ``perf stat`` subprocess whose latest interval's rates are read at any time."""

    def __init__(
        self,
        interval_ms: int = 1000,
        events: Sequence[str] | None = None,
        perf_path: str = "perf",
        clock: Callable[[], float] = time.monotonic,
        history: int = 3600,
        stop_timeout_s: float = 2.0,
    ) -> None:
        """
        Raises:
            InvalidTelemetryRequestError: ``interval_ms`` below 10 (perf's floor) or a malformed event name.
        """
        if interval_ms < 10:
            raise InvalidTelemetryRequestError("perf needs at least 10 ms", parameter="interval_ms", value=interval_ms)
        chosen = tuple(events) if events is not None else DEFAULT_EVENTS
        for event in chosen:
            if not _EVENT_NAME.match(event):
                raise InvalidTelemetryRequestError("not a perf event name", parameter="events", value=event)
        if not chosen:
            raise InvalidTelemetryRequestError("at least one event", parameter="events", value=list(chosen))
        self.interval_ms = interval_ms
        self.events = chosen
        self.perf_path = perf_path
        self.clock = clock
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._history: deque[PerfInterval] = deque(maxlen=history)
        self._unavailable: dict[str, str] = {}
        self._failure: str | None = None
        self._messages: deque[str] = deque(maxlen=40)
        self._stopping = False
        self._last_time_s = 0.0

    @property
    def command(self) -> list[str]:
        return [self.perf_path, "stat", "-a", "-I", str(self.interval_ms), "-x,", "-e", ",".join(self.events)]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start perf (blocking for the fork only). A missing perf binary is recorded, not raised."""
        if self._proc is not None:
            return
        self._stopping = False
        self._last_time_s = 0.0
        with self._lock:
            self._failure = None
        try:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                env=None,
            )
        except FileNotFoundError:
            self._fail(f"perf is not installed ({self.perf_path!r} not found)")
            return
        except OSError as e:  # EACCES, ENOEXEC, EMFILE...: telemetry goes on without perf
            self._fail(f"perf cannot be executed: {e.strerror or e}")
            return
        self._reader = threading.Thread(target=self._read, args=(self._proc,), name="perf-stat", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        """SIGINT (perf prints its last interval and exits), kill after ``stop_timeout_s``; reaps the child."""
        self._stopping = True
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=self.stop_timeout_s)
            self._reader = None
        if proc.stderr is not None:
            proc.stderr.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------------ results
    @property
    def unavailable(self) -> dict[str, str]:
        """``{event or "perf": reason}`` for everything perf cannot count here."""
        with self._lock:
            out = dict(self._unavailable)
            if self._failure is not None:
                out["perf"] = self._failure
                for event in self.events:
                    out.setdefault(event, self._failure)
            return out

    def latest(self) -> PerfInterval | None:
        with self._lock:
            return self._history[-1] if self._history else None

    def intervals(self, since: float | None = None) -> list[PerfInterval]:
        """Completed intervals, oldest first; with ``since``, those completed at or after it."""
        with self._lock:
            items = list(self._history)
        return items if since is None else [i for i in items if i.t >= since]

    def rates(self) -> dict[str, float]:
        """The latest interval's per-event rates (``{}`` before the first interval)."""
        latest = self.latest()
        return dict(latest.rates) if latest is not None else {}

    # ------------------------------------------------------------------ internals
    def _fail(self, reason: str) -> None:
        with self._lock:
            self._failure = reason

    def _event_name(self, event: str) -> str:
        if event in self.events:
            return event
        base = event.split(":", 1)[0]  # perf appends :u when it falls back to user-only counting
        return base if base in self.events else event

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self._consume(proc.stderr)
        self._on_exit(proc)

    def _read_lines_for_test(self, lines: Iterable[str]) -> None:
        """Feed CSV lines as if perf had printed them (tests and replays)."""
        self._consume(lines)

    def _consume(self, lines: Iterable[str]) -> None:
        pending: _Pending | None = None
        for line in lines:
            record = parse_perf_line(line)
            if record is None or record.time_s is None:
                if line.strip():
                    self._messages.append(line.strip())
                continue
            if pending is not None and record.time_s != pending.time_s:
                self._complete(pending)
                pending = None
            if pending is None:
                pending = _Pending(record.time_s)
            pending.records.append(record)
            if len(pending.records) >= len(self.events):
                self._complete(pending)
                pending = None
        if pending is not None:
            self._complete(pending)

    def _complete(self, pending: _Pending) -> None:
        length = pending.time_s - self._last_time_s
        self._last_time_s = pending.time_s
        if length <= 0:
            return
        counts: dict[str, float] = {}
        rates: dict[str, float] = {}
        gone: dict[str, str] = {}
        for r in pending.records:
            name = self._event_name(r.event)
            if r.count is None:
                gone[name] = (
                    "not supported by this CPU or hypervisor (perf printed <not supported>)"
                    if r.status == "<not supported>"
                    else "not counted in the last interval (multiplexed out or disabled)"
                )
                continue
            counts[name] = r.count
            # task-clock counts milliseconds of CPU: per second of wall time that is CPUs busy
            rates[name] = r.count / 1000.0 / length if name == "task-clock" else r.count / length
        with self._lock:
            for name in counts:
                self._unavailable.pop(name, None)
            self._unavailable.update(gone)
            self._history.append(PerfInterval(self.clock(), length, MappingProxyType(counts), MappingProxyType(rates)))

    def _on_exit(self, proc: subprocess.Popen[str]) -> None:
        if self._stopping:
            return
        try:
            code: int | None = proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            code = None  # stderr closed but perf lingers: stop() reaps it
        text = " ".join(self._messages)
        if any(marker in text for marker in _FORBIDDEN):
            self._fail(f"perf is forbidden here (exit {code}): {text[:300]}")
        else:
            self._fail(f"perf exited with code {code}: {text[:300] or 'no message'}")
