"""Slowloris against ``lumos-mcp serve --http``: how a normal client fares while one client
holds many half-sent requests open, and how much the server writes to stderr meanwhile.

    python -m benchmarks.http_slowloris --connections 2000 --seconds 30

The server runs in sandbox mode on 127.0.0.1 with a throw-away state directory. The attacker
connects from 127.0.0.2 (still loopback), sends a request line and one header, then trickles
one more header line per connection every two seconds and never ends the head. While it
does, a normal client (the mcp SDK over streamable HTTP, with the token) calls ``get_status``
once a second. Pass ``--python`` to serve with another checkout's interpreter (for a before
and after comparison).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
OPEN_FOR_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


class Attacker:
    """Half-open requests from 127.0.0.2, trickled so an idle timer alone never fires."""

    def __init__(self, port: int, count: int, source: str = "127.0.0.2") -> None:
        self.port, self.count, self.source = port, count, source
        self.socks: list[socket.socket] = []
        self.opened = self.refused = self.cut = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def open(self) -> None:
        head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n".encode()
        give_up = time.monotonic() + OPEN_FOR_S
        for _ in range(self.count):
            if time.monotonic() > give_up:  # a server that stopped accepting: count the rest as refused
                self.refused += 1
                continue
            s = socket.socket()
            # the port is picked at connect time, so more than the ephemeral range fits one source
            s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
            s.settimeout(5)
            try:
                s.bind((self.source, 0))
                s.connect(("127.0.0.1", self.port))
                s.sendall(head)
            except OSError:
                self.refused += 1
                s.close()
                continue
            s.setblocking(False)
            self.socks.append(s)
            self.opened += 1
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(2.0):
            alive = []
            for s in self.socks:
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    self.cut += 1
                    s.close()
                    continue
                try:
                    s.send(b"X-Slow: 1\r\n")
                    alive.append(s)
                except BlockingIOError:
                    alive.append(s)
                except OSError:
                    self.cut += 1
                    s.close()
            self.socks = alive

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for s in self.socks:
            s.close()

    @property
    def still_open(self) -> int:
        return len(self.socks)


async def normal_client(url: str, token: str, seconds: float, call_timeout_s: float) -> tuple[list[float], int]:
    """Latency of each ``get_status`` call (s) and how many failed or timed out."""
    latencies: list[float] = []
    failures = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            with anyio.fail_after(call_timeout_s):
                http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=call_timeout_s)
                async with http, Client(streamable_http_client(url, http_client=http)) as client:
                    await client.call_tool("get_status", {})
            latencies.append(time.monotonic() - started)
        except (TimeoutError, OSError, httpx2.HTTPError, ExceptionGroup):
            failures += 1
        await anyio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    return latencies, failures


def run(python: str, connections: int, seconds: float, call_timeout_s: float, processes: int = 1) -> dict[str, object]:
    token = secrets.token_urlsafe(24)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lumos-slowloris-") as tmp:
        err_path = Path(tmp) / "stderr"
        env = dict(os.environ, LUMOS_MCP_TOKEN=token, LUMOS_STATE_DIR=str(Path(tmp) / "state"))
        cmd = [python, "-m", "lumos_mcp", "serve", "--http", "--port", str(port), "--mode", "sandbox"]
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=tmp
            )
        try:
            wait_port(port)
            url = f"http://127.0.0.1:{port}/mcp"
            quiet, quiet_failures = anyio.run(normal_client, url, token, 3.0, call_timeout_s)
            start_bytes = err_path.stat().st_size
            # The attacker is a process of its own, so its sockets do not eat this one's file limit.
            # Several when many: one process's file limit caps its sockets.
            share = -(-connections // processes)
            attacks = [
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.http_slowloris", "--attack", str(port), str(n)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
                for n in [min(share, connections - i * share) for i in range(processes)]
            ]
            opened = refused = cut = still_open = 0
            for attack in attacks:
                assert attack.stdout is not None
                o, r = map(int, attack.stdout.readline().split())
                opened, refused = opened + o, refused + r
            loaded, failures = anyio.run(normal_client, url, token, seconds, call_timeout_s)
            for attack in attacks:
                assert attack.stdout is not None and attack.stdin is not None
                attack.stdin.close()
                c, s = map(int, attack.stdout.readline().split())
                cut, still_open = cut + c, still_open + s
                attack.wait(timeout=30)
            stderr_bytes = err_path.stat().st_size - start_bytes
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {
        "connections": connections,
        "opened": opened,
        "refused_at_connect": refused,
        "cut_by_server": cut,
        "still_open_at_end": still_open,
        "quiet_median_ms": _ms(statistics.median(quiet)) if quiet else None,
        "calls": len(loaded) + failures,
        "failed_calls": failures + quiet_failures,
        "median_ms": _ms(statistics.median(loaded)) if loaded else None,
        "max_ms": _ms(max(loaded)) if loaded else None,
        "stderr_bytes": stderr_bytes,
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def attack(port: int, connections: int) -> int:
    """The attacker process: open, say how many, hold until stdin closes, say how many were cut."""
    attacker = Attacker(port, connections)
    attacker.open()
    print(attacker.opened, attacker.refused, flush=True)
    sys.stdin.read()
    still_open = attacker.still_open
    attacker.close()
    print(attacker.cut, still_open, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the normal client calls under attack")
    parser.add_argument("--call-timeout", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=1, help="attacker processes (each holds connections/N)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the server")
    parser.add_argument("--attack", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.attack:
        return attack(*args.attack)
    result = run(args.python, args.connections, args.seconds, args.call_timeout, args.processes)
    for key, value in result.items():
        print(f"{key}: {value}")
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
