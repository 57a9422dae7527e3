"""A built-in request/response latency probe that needs nothing installed.

Server: one process, one thread, burning ``work_us`` of CPU per request and answering in
order, over a unix socket (default) or 127.0.0.1 TCP. It is a latency-sensitive service in
miniature: when it cannot get a CPU, requests queue and the tail grows.

Client: an open-loop sender at a fixed rate. Request ``i`` is *scheduled* at ``t0 + i/rate``
and its latency is measured from that scheduled time, not from when it was actually sent,
so a client that falls behind (its own CPU starved, or the outstanding bound reached)
counts the lateness instead of hiding it (no coordinated omission). A request not answered
within ``timeout_s`` of its scheduled time is counted as timed out, sent or not.

Wire format: 16-byte frames ``<QQ`` (sequence number, 0), echoed back.

    python -m lumos_mcp.arena.probe serve  [--address unix:/path | tcp:127.0.0.1:0] [--work-us 20]
    python -m lumos_mcp.arena.probe client --address ... --rate-hz 1000 --duration-s 10 --out lat.npy
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import selectors
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lumos_mcp.arena.stats import FloatArray, TailStats, tail_stats

FRAME = struct.Struct("<QQ")
DEFAULT_WORK_US = 20.0
DEFAULT_RATE_HZ = 1000.0


def parse_address(address: str) -> tuple[int, str | tuple[str, int]]:
    """``"unix:/run/x.sock"`` -> ``(AF_UNIX, "/run/x.sock")``; ``"tcp:127.0.0.1:5000"`` -> ``(AF_INET, (host, port))``.

    Raises:
        ValueError: any other form (TCP must be on 127.0.0.1 or localhost).
    """
    kind, _, rest = address.partition(":")
    if kind == "unix" and rest:
        return socket.AF_UNIX, rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host in ("127.0.0.1", "localhost") and port.isdigit():
            return socket.AF_INET, ("127.0.0.1", int(port))
    raise ValueError(f"probe address must be unix:PATH or tcp:127.0.0.1:PORT, not {address!r}")


def spin_us(work_us: float) -> None:
    """Busy-wait ``work_us`` microseconds of wall time on this CPU."""
    end = time.perf_counter_ns() + int(work_us * 1000)
    while time.perf_counter_ns() < end:
        pass


# ---------------------------------------------------------------------------- server
def serve(address: str, work_us: float = DEFAULT_WORK_US, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until killed: echo each frame after ``work_us`` of CPU work, one request at a time.

    ``on_ready`` gets the bound address (``tcp:127.0.0.1:0`` is resolved to the real port).

    Raises:
        ValueError: a bad address.
        OSError: the socket cannot be bound.
    """
    family, target = parse_address(address)
    listener = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(target)
    listener.listen(64)
    bound = address if family == socket.AF_UNIX else f"tcp:127.0.0.1:{listener.getsockname()[1]}"
    if on_ready is not None:
        on_ready(bound)
    buffers: dict[socket.socket, bytearray] = {}
    with selectors.DefaultSelector() as sel:
        sel.register(listener, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is listener:
                    conn, _addr = listener.accept()
                    if family == socket.AF_INET:
                        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buffers[conn] = bytearray()
                    sel.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    buffers.pop(sock, None)
                    continue
                buf = buffers[sock]
                buf += data
                whole = len(buf) - len(buf) % FRAME.size
                for offset in range(0, whole, FRAME.size):
                    spin_us(work_us)
                    try:
                        sock.sendall(buf[offset : offset + FRAME.size])
                    except OSError:
                        break
                del buf[:whole]


# ---------------------------------------------------------------------------- client
@dataclass(frozen=True)
class ProbeResult:
    """One client run. ``latencies_us[i]`` is answered request i's latency from its scheduled send time."""

    latencies_us: FloatArray
    scheduled: int
    sent: int
    received: int
    timed_out: int
    late_sends: int
    """Requests sent more than one period after their scheduled time (the client fell behind)."""
    duration_s: float
    rate_hz: float

    def stats(self, slo_us: float) -> TailStats:
        """Tail statistics, timed-out requests counted as infinitely slow; throughput = answered per second.

        Raises:
            ValueError: nothing was scheduled.
        """
        return tail_stats(
            self.latencies_us, slo_us, timed_out=self.timed_out, throughput=self.received / self.duration_s
        )

    def counts(self) -> dict[str, float]:
        return {
            "scheduled": self.scheduled,
            "sent": self.sent,
            "received": self.received,
            "timed_out": self.timed_out,
            "late_sends": self.late_sends,
            "duration_s": self.duration_s,
            "rate_hz": self.rate_hz,
        }


def connect(address: str, timeout_s: float = 5.0) -> socket.socket:
    """Connect to a probe server, retrying until ``timeout_s`` (it may still be binding).

    Raises:
        ValueError: a bad address.
        OSError: no server answered in time.
    """
    family, target = parse_address(address)
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.connect(target)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def run_client(
    address: str,
    rate_hz: float = DEFAULT_RATE_HZ,
    duration_s: float = 1.0,
    *,
    max_outstanding: int = 64,
    timeout_s: float = 5.0,
    on_answer: Callable[[int, int, float], None] | None = None,
) -> ProbeResult:
    """Send ``rate_hz * duration_s`` requests on schedule and time each from its scheduled send.

    At most ``max_outstanding`` requests are in flight; a due request waits for a free slot
    and its wait counts in its latency. Returns after every request is answered or timed out
    (at most ``duration_s + timeout_s`` plus a little).

    ``on_answer(seq, scheduled_ns, latency_us)``, when given, is called as each request is
    answered (``latency_us`` = inf when it timed out), ``scheduled_ns`` on the
    `time.perf_counter_ns` clock: for a live stream of timestamped latencies.

    Raises:
        ValueError: a bad address, rate, duration, bound or timeout.
        OSError: the server cannot be reached or the connection breaks.
    """
    if not (rate_hz > 0 and duration_s > 0 and max_outstanding >= 1 and timeout_s > 0):
        raise ValueError("rate_hz, duration_s, timeout_s must be > 0 and max_outstanding >= 1")
    n = max(1, round(rate_hz * duration_s))
    period_ns = 1e9 / rate_hz
    timeout_ns = int(timeout_s * 1e9)
    lat = np.full(n, np.nan, dtype=np.float64)
    sock = connect(address)
    sock.setblocking(False)
    # select(2) sleeps with microsecond resolution; epoll and poll round timeouts up to whole
    # milliseconds, which would add up to 1 ms of the client's own lateness to every request.
    sel = selectors.SelectSelector()
    sel.register(sock, selectors.EVENT_READ)
    buf = bytearray()
    reported: set[int] = set()
    next_seq = sent = received = late = expired = in_flight = 0
    t0 = time.perf_counter_ns() + 2_000_000
    end_ns = t0 + int((n - 1) * period_ns) + timeout_ns

    def scheduled(seq: int) -> int:
        return t0 + int(seq * period_ns)

    try:
        while received + expired < n:
            now = time.perf_counter_ns()
            while next_seq < n and scheduled(next_seq) <= now and in_flight < max_outstanding:
                if now - scheduled(next_seq) > timeout_ns:
                    expired += 1  # never sent: it would already be too late
                    if on_answer is not None:
                        on_answer(next_seq, scheduled(next_seq), math.inf)
                        reported.add(next_seq)
                else:
                    if now - scheduled(next_seq) > period_ns:
                        late += 1
                    sock.sendall(FRAME.pack(next_seq, 0))
                    sent += 1
                    in_flight += 1
                next_seq += 1
            if now > end_ns:
                break
            wake = end_ns
            if next_seq < n and in_flight < max_outstanding:
                wake = min(wake, scheduled(next_seq))
            wait_s = max(0.0, (wake - now) / 1e9)
            if not sel.select(wait_s):
                continue
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("probe server closed the connection")
            now = time.perf_counter_ns()
            buf += data
            whole = len(buf) - len(buf) % FRAME.size
            for offset in range(0, whole, FRAME.size):
                seq, _ = FRAME.unpack_from(buf, offset)
                in_flight -= 1
                elapsed = now - scheduled(seq)
                if elapsed > timeout_ns:
                    expired += 1
                    if on_answer is not None:
                        on_answer(seq, scheduled(seq), math.inf)
                        reported.add(seq)
                else:
                    lat[seq] = elapsed / 1000.0
                    received += 1
                    if on_answer is not None:
                        on_answer(seq, scheduled(seq), elapsed / 1000.0)
                        reported.add(seq)
            del buf[:whole]
    finally:
        sel.close()
        sock.close()
    if on_answer is not None:  # never answered (or never sent) before the end: timed out too
        for seq in sorted(set(range(n)) - reported):
            on_answer(seq, scheduled(seq), math.inf)
    answered = lat[~np.isnan(lat)]
    return ProbeResult(
        latencies_us=answered,
        scheduled=n,
        sent=sent,
        received=received,
        timed_out=n - received,
        late_sends=late,
        duration_s=n / rate_hz,
        rate_hz=rate_hz,
    )


# ---------------------------------------------------------------------------- command line
def _precise_timers() -> None:
    """Timer slack 1 ns for this process (default 50 us): the client wakes on schedule, measured
    about 35 us earlier at the median on the reference machine. Best effort."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK


def main(argv: list[str] | None = None) -> int:
    """``serve`` prints ``ready ADDRESS``; ``client`` saves latencies to ``--out`` (.npy), prints counts as JSON.

    Raises:
        SystemExit: bad arguments.
    """
    parser = argparse.ArgumentParser(prog="python -m lumos_mcp.arena.probe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--address", required=True, help="unix:PATH or tcp:127.0.0.1:PORT (0: any free port)")
    s.add_argument("--work-us", type=float, default=DEFAULT_WORK_US)
    c = sub.add_parser("client")
    c.add_argument("--address", required=True)
    c.add_argument("--rate-hz", type=float, default=DEFAULT_RATE_HZ)
    c.add_argument("--duration-s", type=float, default=10.0)
    c.add_argument("--max-outstanding", type=int, default=64)
    c.add_argument("--timeout-s", type=float, default=5.0)
    c.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.address, args.work_us, on_ready=lambda bound: print(f"ready {bound}", flush=True))
        return 0
    _precise_timers()
    result = run_client(
        args.address,
        args.rate_hz,
        args.duration_s,
        max_outstanding=args.max_outstanding,
        timeout_s=args.timeout_s,
    )
    np.save(args.out, result.latencies_us)
    print(json.dumps(result.counts()), flush=True)
    return 0


__all__ = [
    "DEFAULT_RATE_HZ",
    "DEFAULT_WORK_US",
    "ProbeResult",
    "connect",
    "main",
    "parse_address",
    "run_client",
    "serve",
    "spin_us",
]


if __name__ == "__main__":
    sys.exit(main())
