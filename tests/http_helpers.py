"""What the tests that start ``lumos-mcp serve --http`` share: a free loopback port, and a
server process that is started, waited for and always stopped."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Until something listens on ``port``; fails at once when ``proc`` exits first."""
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise AssertionError(f"the HTTP server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)  # polling a port another process opens: no event to wait on
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@contextmanager
def serving_http(cmd: list[str], env: Mapping[str, str], port: int, log: Path) -> Iterator[str]:
    """Run ``cmd`` (a server listening on ``port``) with its stderr in ``log``; yield its MCP URL."""
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(cmd, env=dict(env), stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_port(port, proc)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
