"""A simulated fleet on this machine, for the canary playbook's tests and benchmark.

Each host is its own ``lumos-mcp serve --http`` process in sandbox mode (writes go to a shadow
tree under its own state directory; the real host is only read) on its own 127.0.0.1 port.
The Ansible inventory reaches every host with the local connection and this Python as
``ansible_python_interpreter``, so each module runs as it would on a managed host: a process
of its own that talks to that host's server over MCP streamable HTTP with the bearer token.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO  # holds ansible_collections/lumos/tuning
PLAYBOOK = REPO / "ansible_collections" / "lumos" / "tuning" / "playbooks" / "canary.yml"
POLICY = Path(__file__).resolve().parent / "fleet-policy.toml"
PROBE_TASKS = Path(__file__).resolve().parent / "fleet-probe.yml"
TIMING_CALLBACKS = Path(__file__).resolve().parent / "fleet_callbacks"
GROUP = "lumos_fleet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Host:
    name: str
    port: int
    state_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@dataclass
class Fleet:
    """``n`` lumos-mcp servers and an inventory for them, under ``root``."""

    root: Path
    n: int
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    hosts: list[Host] = field(default_factory=list)

    def start(self, timeout_s: float = 120.0) -> None:
        """Start every server, then wait until each listens (fails at once if one exits)."""
        env = {**os.environ, "LUMOS_MCP_TOKEN": self.token}
        for i in range(self.n):
            name = f"h{i + 1:02d}"
            host = Host(name, free_port(), self.root / name / "state")
            host.state_dir.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.root / name / "server.log", "wb")  # noqa: SIM115 - kept open for the process's life
            host.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "lumos_mcp", "serve", "--http", "--port", str(host.port)),
                    *("--mode", "sandbox", "--state-dir", str(host.state_dir), "--policy", str(POLICY)),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            log.close()
            self.hosts.append(host)
        until = time.monotonic() + timeout_s
        for host in self.hosts:
            assert host.proc is not None
            while True:
                if host.proc.poll() is not None:
                    raise RuntimeError(f"{host.name}'s server exited with {host.proc.returncode}")
                try:
                    socket.create_connection(("127.0.0.1", host.port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > until:
                        raise TimeoutError(f"{host.name} not listening after {timeout_s} s") from None
                    time.sleep(0.1)  # another process opens the port: nothing to wait on but polling
        self.write_inventory()

    def stop(self) -> None:
        """SIGTERM every server (each reverts what it still has armed), then wait for all."""
        for host in self.hosts:
            if host.proc is not None and host.proc.poll() is None:
                host.proc.terminate()
        for host in self.hosts:
            if host.proc is None:
                continue
            try:
                host.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                host.proc.kill()
                host.proc.wait(timeout=10)

    def wait_for_telemetry(self, window_s: float) -> None:
        """Until every server's telemetry buffer covers ``window_s`` (its read_telemetry waits for it)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            list(
                pool.map(
                    lambda h: self.call(h, "read_telemetry", {"window_s": window_s, "sections": ["app"]}), self.hosts
                )
            )

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.json"

    def write_inventory(self) -> None:
        hosts = {
            h.name: {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "lumos_url": h.url,
                "lumos_token": self.token,
            }
            for h in self.hosts
        }
        self.inventory.write_text(json.dumps({"all": {"children": {GROUP: {"hosts": hosts}}}}))

    def env(self, timing_log: Path | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_HOME": str(self.root / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(self.root / "ansible-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.root / "ansible-remote-tmp"),
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORKS": str(max(5, self.n)),
        }
        env.pop("LUMOS_MCP_TOKEN", None)  # the inventory carries the token
        if timing_log is not None:
            env["ANSIBLE_CALLBACK_PLUGINS"] = str(TIMING_CALLBACKS)
            env["ANSIBLE_CALLBACKS_ENABLED"] = "lumos_timing"
            env["LUMOS_TIMING_LOG"] = str(timing_log)
        return env

    def playbook_cmd(self, extra: Mapping[str, Any], check: bool = False) -> list[str]:
        cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(self.inventory), str(PLAYBOOK)]
        cmd += ["-e", json.dumps(dict(extra))]
        if check:
            cmd += ["--check", "--diff"]
        return cmd

    def run_playbook(
        self, extra: Mapping[str, Any], check: bool = False, timing_log: Path | None = None, timeout_s: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.playbook_cmd(extra, check),
            env=self.env(timing_log),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )

    @contextmanager
    def playbook_process(self, extra: Mapping[str, Any], log: Path) -> Iterator[subprocess.Popen[bytes]]:
        """The playbook as a process group of its own (the controller and its workers), killed on exit."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                self.playbook_cmd(extra),
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                yield proc
            finally:
                kill_controller(proc)

    # ------------------------------------------------------------------ reading a host
    def call(self, host: Host, tool: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from ansible_collections.lumos.tuning.plugins.module_utils.lumos_client import call_tool

        out: dict[str, Any] = call_tool(host.url, self.token, tool, dict(args or {}), 120.0)
        return out

    def value(self, host: Host, knob: str) -> Any:
        tunables = self.call(host, "list_tunables", {"only_allowed": True})["tunables"]
        return next(t["value"] for t in tunables if t["id"] == knob)

    def transactions(self, host: Host) -> list[dict[str, Any]]:
        """Every transaction the host's server shows: armed, staged and recent."""
        status = self.call(host, "get_status")
        return [*status["armed"], *status["staged"], *status["recent"]]


def kill_controller(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the controller and every process under it, as if its machine died.

    Ansible's workers start sessions of their own (they detach), so killing the controller's
    process group alone leaves them orphaned, blocked writing results to a dead parent. The
    controller is stopped first so that it forks nothing while its tree is listed.
    """
    import psutil

    if proc.poll() is None:
        try:
            leader = psutil.Process(proc.pid)
            leader.suspend()
            tree = leader.children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for child in tree:
            with suppress(psutil.NoSuchProcess):
                child.kill()
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def touched(txs: list[dict[str, Any]], knob: str, value: Any) -> list[dict[str, Any]]:
    """The transactions that were applied (not merely staged) with ``knob`` set to ``value``."""
    return [
        t
        for t in txs
        if t["state"] != "staged" and any(c["knob"] == knob and c["after"] == value for c in t["changes"])
    ]
