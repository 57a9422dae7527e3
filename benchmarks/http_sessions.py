"""Abandoned legacy sessions against ``lumos-mcp serve --http``: what they cost, what the
next client gets at the cap, and whether the idle timeout frees them.

    python -m benchmarks.http_sessions --sessions 1000 --wait 320

Opens ``--sessions`` 2025-11-25 sessions (initialize, then nothing), reads the server's RSS,
tries one more session, waits ``--wait`` seconds and tries again.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import psutil

from benchmarks.http_slowloris import free_port, wait_port

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--wait", type=float, default=320.0)
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the server")
    args = parser.parse_args(argv)
    token = secrets.token_urlsafe(24)
    port = free_port()
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    with tempfile.TemporaryDirectory(prefix="lumos-sessions-") as tmp:
        env = dict(os.environ, LUMOS_MCP_TOKEN=token, LUMOS_STATE_DIR=str(Path(tmp) / "state"))
        cmd = [args.python, "-m", "lumos_mcp", "serve", "--http", "--port", str(port), "--mode", "sandbox"]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp
        )
        try:
            wait_port(port)
            url = f"http://127.0.0.1:{port}/mcp"
            rss = psutil.Process(proc.pid)
            with httpx2.Client(timeout=30, headers=headers) as http:
                http.post(url, json=INIT)
                before = rss.memory_info().rss
                statuses: dict[int, int] = {}
                for _ in range(args.sessions):
                    code = http.post(url, json=INIT).status_code
                    statuses[code] = statuses.get(code, 0) + 1
                after = rss.memory_info().rss
                one_more = http.post(url, json=INIT).status_code
                print(f"sessions opened: {statuses}")
                print(f"rss growth: {(after - before) / 2**20:.1f} MiB for {args.sessions} sessions")
                print(f"one more session at once: HTTP {one_more}")
                time.sleep(args.wait)
                later = http.post(url, json=INIT).status_code
                print(f"one more session after {args.wait:g} s idle: HTTP {later}")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
