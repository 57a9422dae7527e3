"""Intruders: a real ``lumos-mcp serve --http`` on loopback, asked without a token, with a
wrong one, with the token in the query string, with a foreign Host or Origin (DNS
rebinding) and with an oversized body. Each must be refused and none may reach a tool: the
audit log, where every tool call that stages leaves records, must not move. A control call
with the right token must move it (so the check can see a call that gets through).

Slowloris: one client holding many half-sent requests is cut off, and another is served.

Also: the audit log detects an edited, deleted, inserted or reordered record.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import orjson

from lumos_mcp.api import tool_error
from lumos_mcp.selftest.common import POLICY, Outcome

STAGE_CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "stage_sched_params", "arguments": {"changes": {"vm.swappiness": 30}}},
}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@dataclass
class HttpServer:
    url: str
    token: str
    state_dir: Path
    pid: int

    def audit_lines(self) -> int:
        try:
            return self.state_dir.joinpath("audit.jsonl").read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def http_server(base: Path, start_timeout_s: float = 60.0) -> Iterator[HttpServer]:
    """``lumos-mcp serve --http`` (sandbox mode, the self-test policy) on a free loopback port;
    always stopped."""
    from lumos_mcp.selftest.crash import _package_parent

    token = secrets.token_urlsafe(24)
    port = _free_port()
    state = base / "http-state"
    policy = base / "selftest-policy.toml"
    policy.write_text(POLICY)
    env = dict(os.environ, PYTHONPATH=_package_parent(), LUMOS_MCP_TOKEN=token)
    log = open(base / "http-server.log", "wb")  # noqa: SIM115 - closed in finally
    cmd = [sys.executable, "-m", "lumos_mcp", "serve", "--http", "--port", str(port), "--mode", "sandbox"]
    cmd += ["--state-dir", str(state), "--policy", str(policy)]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
    )
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"lumos-mcp serve --http exited {proc.returncode}: see {base / 'http-server.log'}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"lumos-mcp serve --http did not listen on {port} within {start_timeout_s} s")
            time.sleep(0.05)
        yield HttpServer(url=f"http://127.0.0.1:{port}/mcp", token=token, state_dir=state, pid=proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def _attempts(server: HttpServer) -> list[tuple[str, dict[str, Any], set[int]]]:
    body = orjson.dumps(STAGE_CALL)
    auth = {"Authorization": f"Bearer {server.token}"}
    big = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"stage_sched_params","arguments":{"pad":"'
    big += b"x" * (5 * 1024 * 1024) + b'"}}}'
    port = server.url.split(":")[2].split("/")[0]
    return [
        ("no token", {"headers": HEADERS, "content": body}, {401}),
        ("wrong token", {"headers": {**HEADERS, "Authorization": "Bearer " + "x" * 32}, "content": body}, {401}),
        ("empty bearer", {"headers": {**HEADERS, "Authorization": "Bearer"}, "content": body}, {401}),
        ("basic auth", {"headers": {**HEADERS, "Authorization": f"Basic {server.token}"}, "content": body}, {401}),
        (
            "token in query string",
            {"headers": HEADERS, "content": body, "params": {"access_token": server.token, "token": server.token}},
            {401},
        ),
        (
            "foreign Host (DNS rebinding)",
            {"headers": {**HEADERS, **auth, "Host": "evil.example"}, "content": body},
            {421},
        ),
        (
            "foreign Host with our port",
            {"headers": {**HEADERS, **auth, "Host": f"evil.example:{port}"}, "content": body},
            {421},
        ),
        (
            "foreign Origin",
            {"headers": {**HEADERS, **auth, "Origin": "http://evil.example"}, "content": body},
            {403, 421},
        ),
        ("oversized body (5 MiB)", {"headers": {**HEADERS, **auth}, "content": big}, {413}),
    ]


def run_intruders(server: HttpServer, out: Outcome) -> None:
    before = server.audit_lines()
    refused = 0
    table: dict[str, int] = {}
    attempts = _attempts(server)
    with httpx2.Client(timeout=30) as http:
        for name, kwargs, wanted in attempts:
            response = http.post(server.url, **kwargs)
            table[name] = response.status_code
            if response.status_code in wanted:
                refused += 1
            else:
                out.fail(f"intruder '{name}': HTTP {response.status_code}, wanted {sorted(wanted)}")
    reached = server.audit_lines() - before
    if reached:
        out.fail(f"intruders reached a tool: the audit log grew by {reached} lines")
    control = _control_call(server)
    if server.audit_lines() - before <= 0:
        out.fail("control: an authorised stage call left no audit record, so the check above proves nothing")
    out.figures.update(
        intruder_attempts=len(attempts),
        intruders_refused=refused,
        intruders_reaching_a_tool=reached,
        intruder_statuses=table,
        control_call=control,
    )


def _control_call(server: HttpServer) -> str:
    import anyio
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def go() -> str:
        with anyio.fail_after(60):
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
            async with http, Client(streamable_http_client(server.url, http_client=http)) as client:
                result = await client.call_tool("stage_sched_params", {"changes": {"vm.swappiness": 30}})
                error = tool_error(result)
                return "staged" if not result.is_error else f"error {error.code if error else None}"

    return anyio.run(go)


# --------------------------------------------------------------------------- slowloris
def run_slowloris(server: HttpServer, out: Outcome, connections: int = 200, source: str = "127.0.0.2") -> None:
    """Half-sent requests from one client (``source``, loopback): those over the per-client
    limit are closed at once, the rest within the request timeout, and a normal client is
    served meanwhile."""
    from lumos_mcp.http_server import HttpLimits

    limits = HttpLimits()
    port = int(server.url.split(":")[2].split("/")[0])
    head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    socks: list[socket.socket] = []
    try:
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
            socks.append(s)
            with contextlib.suppress(OSError):  # already refused: the reset may beat the send
                s.sendall(head)
            s.setblocking(False)
        started = time.monotonic()
        control = _control_call(server)
        control_s = time.monotonic() - started
        open_socks = list(socks)
        deadline = started + limits.request_timeout_s + 5
        while open_socks and time.monotonic() < deadline:
            open_socks = [s for s in open_socks if not _closed(s)]
            if open_socks:
                time.sleep(0.2)
        cut_s = time.monotonic() - started
    finally:
        for s in socks:
            s.close()
    if open_socks:
        out.fail(f"slowloris: {len(open_socks)} of {connections} half-sent requests still open after {cut_s:.1f} s")
    if control != "staged":
        out.fail(f"slowloris: a normal client's call failed while half-sent requests were held: {control}")
    out.figures.update(
        slowloris_connections=connections,
        slowloris_still_open=len(open_socks),
        slowloris_all_cut_within_s=round(cut_s, 1),
        slowloris_control_call=control,
        slowloris_control_call_s=round(control_s, 2),
    )


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# --------------------------------------------------------------------------- audit tampering
def run_audit_tamper(base: Path, out: Outcome, records: int = 12, positions: int = 4, seed: int = 1) -> None:
    """Edit, delete, insert and reorder records at several positions; ``verify`` must catch each."""
    import random

    from lumos_mcp.audit import AuditLog, record_hash, verify

    base.mkdir(parents=True, exist_ok=True)
    path = base / "audit.jsonl"
    log = AuditLog(path)
    last: dict[str, Any] = {}
    for i in range(records):
        last = log.append("stage", tx=f"tx-{i:08x}", changes=[{"knob": "vm.swappiness", "after": i}])
    head = last["hash"]
    lines = path.read_bytes().splitlines(keepends=True)
    rng = random.Random(seed)
    spots = sorted(rng.sample(range(len(lines) - 1), min(positions, len(lines) - 1)))
    tried = detected = 0
    missed: list[str] = []
    for k in spots:
        rec = orjson.loads(lines[k])
        edited = dict(rec, changes=[{"knob": "vm.swappiness", "after": 999}])
        forged = dict(edited, seq=rec["seq"])
        forged["hash"] = record_hash(forged)  # a forger who recomputes the record's own hash
        variants = {
            "edited": [*lines[:k], orjson.dumps(edited) + b"\n", *lines[k + 1 :]],
            "edited+rehashed": [*lines[:k], orjson.dumps(forged) + b"\n", *lines[k + 1 :]],
            "deleted": [*lines[:k], *lines[k + 1 :]],
            "inserted": [*lines[: k + 1], orjson.dumps(forged) + b"\n", *lines[k + 1 :]],
            "reordered": [*lines[:k], lines[k + 1], lines[k], *lines[k + 2 :]],
        }
        for name, content in variants.items():
            tried += 1
            victim = base / f"audit-{name}-{k}.jsonl"
            victim.write_bytes(b"".join(content))
            if verify(victim, head=head).ok:
                missed.append(f"{name}@{k + 1}")
            else:
                detected += 1
    if missed:
        out.fail(f"audit tampering not detected: {missed}")
    out.figures.update(audit_tamperings=tried, audit_tamperings_detected=detected)


def run(base: Path) -> Outcome:
    out = Outcome("intruders")
    base.mkdir(parents=True, exist_ok=True)
    with http_server(base) as server:
        run_intruders(server, out)
        run_slowloris(server, out)
    run_audit_tamper(base / "audit", out)
    return out
