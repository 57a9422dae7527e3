"""Workloads and antagonists for the arena, each a context manager that leaves nothing running.

    with ArenaCgroups(cg, ["victim", "batch"]) as groups, \\
         ProbeWorkload(1000, 20, cgroup=groups["victim"], cgroups=cg) as probe, \\
         BatchWorkload(2, cgroup=groups["batch"], cgroups=cg) as batch:
        mark = batch.mark()
        with noise_cpu(cg, [groups.parent]) as window:
            tail = probe.measure(10.0)
        eps = batch.events_per_s(mark)
        noisy = window.report.noisy()

Every process starts in its own session, inside its cgroup before its first instruction
(see `procs.spawn`), and is stopped by signalling its whole process group with bounded
waits, in ``finally`` paths, also when the body raises. The workloads attach processes to
cgroups (creating a missing group); they never write tuning knobs: a strategy does that
through the server's transaction path, on the files `CgroupManager.rel` names.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import numpy as np
import psutil

from lumos_mcp.arena import procs
from lumos_mcp.arena.probe import DEFAULT_RATE_HZ, DEFAULT_WORK_US, ProbeResult
from lumos_mcp.arena.stats import PgbenchLog, TailStats, parse_pgbench_log, parse_pgbench_tps, tail_stats
from lumos_mcp.errors import ToolMissingError, WorkloadError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.cgroups import CgroupManager

ARENA_PARENT = "lumos-arena"
ARENA_USER = "lumos-arena"
_EPS_RE = re.compile(r"^\[\s*(\d+(?:\.\d+)?)s\s*\].*?\beps:\s*([0-9.]+)")

# ---------------------------------------------------------------------------- requirements
# tool -> Debian package. PostgreSQL's server binaries live in /usr/lib/postgresql/N/bin.
_TOOLS: dict[str, str] = {
    "initdb": "postgresql",
    "postgres": "postgresql",
    "pg_isready": "postgresql",
    "pgbench": "postgresql",
    "setpriv": "util-linux",
    "sysbench": "sysbench",
    "stress-ng": "stress-ng",
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "probe": (),
    "pgbench": ("initdb", "postgres", "pg_isready", "pgbench", "setpriv"),
    "batch": (),  # sysbench when present, the built-in spinner otherwise
    "neighbour": (),
}


def find_tool(name: str) -> str | None:
    """Absolute path of ``name``: the newest ``/usr/lib/postgresql/N/bin`` first (Debian keeps the
    server there and ``/usr/bin/pgbench`` is only a wrapper), then ``PATH``.

    Raises:
        Nothing.
    """
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0),
    )
    if versions:
        return versions[-1]
    return shutil.which(name)


@dataclass(frozen=True)
class Tool:
    name: str
    path: str | None
    package: str

    @property
    def present(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class Requirements:
    """Which external tools are installed, and the Debian line that installs the missing ones."""

    tools: tuple[Tool, ...]

    @property
    def missing(self) -> tuple[Tool, ...]:
        return tuple(t for t in self.tools if not t.present)

    @property
    def install_command(self) -> str:
        """``apt-get install -y ...`` for the missing tools' packages; ``""`` when nothing is missing."""
        packages = sorted({t.package for t in self.missing})
        return f"apt-get install -y {' '.join(packages)}" if packages else ""

    def workload_ok(self, workload: str) -> bool:
        present = {t.name for t in self.tools if t.present}
        return all(name in present for name in _NEEDS[workload])

    def as_dict(self) -> dict[str, object]:
        return {
            "tools": {t.name: {"path": t.path, "package": t.package} for t in self.tools},
            "missing": [t.name for t in self.missing],
            "install_command": self.install_command,
            "workloads": {w: self.workload_ok(w) for w in _NEEDS},
        }


def requirements() -> Requirements:
    """Report every external tool the arena can use, present or missing.

    Raises:
        Nothing.
    """
    return Requirements(tuple(Tool(name, find_tool(name), pkg) for name, pkg in _TOOLS.items()))


def require(tool: str, workload: str) -> str:
    """The path of ``tool``.

    Raises:
        ToolMissingError: it is not installed (the error carries the install line).
    """
    path = find_tool(tool)
    if path is None:
        raise ToolMissingError(tool=tool, workload=workload, install=f"apt-get install -y {_TOOLS.get(tool, tool)}")
    return path


# ---------------------------------------------------------------------------- cgroups
class ArenaCgroups:
    """Sibling cgroups under ``lumos-arena/`` for one experiment, all removed on exit.

    ``groups["batch"]`` is the full name (``"lumos-arena/batch"``) to pass to workloads and to
    `CgroupManager.rel` for knob paths.
    """

    def __init__(self, cgroups: CgroupManager, names: Sequence[str], parent: str = ARENA_PARENT) -> None:
        self.cgroups = cgroups
        self.parent = parent
        self.names = {n: f"{parent}/{n}" for n in names}

    def __getitem__(self, name: str) -> str:
        return self.names[name]

    def __enter__(self) -> Self:
        """Create the groups.

        Raises:
            CgroupError, InvalidParameterError: as `CgroupManager.create` (what was made is removed).
        """
        try:
            for full in self.names.values():
                self.cgroups.create(full)
        except BaseException:
            self.cgroups.remove(self.parent)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cgroups.remove(self.parent)


def _manager(cgroups: CgroupManager | None, cgroup: str | None) -> CgroupManager | None:
    if cgroup is None:
        return cgroups
    manager = cgroups if cgroups is not None else CgroupManager(KernelRoot("/"))
    manager.create(cgroup)
    return manager


class _Workload:
    """Start on enter, stop on exit (also when the body raises); `stop` is idempotent."""

    name = "workload"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------- probe
class ProbeWorkload(_Workload):
    """The built-in request/response probe: a server in ``cgroup`` and a client per measurement
    in ``client_cgroup`` (the root group when ``None``)."""

    name = "probe"

    def __init__(
        self,
        rate_hz: float = DEFAULT_RATE_HZ,
        work_us: float = DEFAULT_WORK_US,
        cgroup: str | None = None,
        *,
        client_cgroup: str | None = None,
        cgroups: CgroupManager | None = None,
        slo_us: float = 1000.0,
        transport: Literal["unix", "tcp"] = "unix",
        max_outstanding: int = 64,
        timeout_s: float = 5.0,
    ) -> None:
        self.rate_hz = rate_hz
        self.work_us = work_us
        self.cgroup = cgroup
        self.client_cgroup = client_cgroup
        self.cgroups = cgroups
        self.slo_us = slo_us
        self.transport = transport
        self.max_outstanding = max_outstanding
        self.timeout_s = timeout_s
        self.address = ""
        self.last_result: ProbeResult | None = None
        self._server: procs.Popen | None = None
        self._tmp: str | None = None

    @property
    def server_pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    def start(self) -> None:
        """Start the server and wait until it listens.

        Raises:
            WorkloadError: it did not start within 15 s.
            CgroupError: it cannot be placed in its cgroup.
        """
        self._tmp = tempfile.mkdtemp(prefix="lumos-probe-")
        address = f"unix:{self._tmp}/probe.sock" if self.transport == "unix" else "tcp:127.0.0.1:0"
        manager = _manager(self.cgroups, self.cgroup)
        self.cgroups = _manager(manager, self.client_cgroup)
        argv = procs.python_argv("lumos_mcp.arena.probe", "serve", "--address", address, "--work-us", str(self.work_us))
        self._server = procs.spawn(
            argv, workload=self.name, cgroups=manager, cgroup=self.cgroup, env=procs.python_env()
        )
        line = procs.read_line(self._server, 15.0, workload=self.name)
        if not line.startswith("ready "):
            raise WorkloadError(f"unexpected first line {line!r}", workload=self.name)
        self.address = line.split(" ", 1)[1]

    def measure(self, window_s: float = 10.0) -> TailStats:
        """Run the client for ``window_s`` and return the window's tail (throughput = answered/s).

        Takes about ``window_s`` + 0.5 s; at most ``window_s + timeout_s + 30`` s.

        Raises:
            WorkloadError: the server is not running, or the client failed or hung.
            CgroupError: the client cannot be placed in its cgroup.
        """
        if self._server is None or self._server.poll() is not None or self._tmp is None:
            raise WorkloadError("the probe server is not running: start() first", workload=self.name)
        out = os.path.join(self._tmp, "latencies.npy")
        argv = procs.python_argv(
            "lumos_mcp.arena.probe",
            "client",
            "--address",
            self.address,
            "--rate-hz",
            str(self.rate_hz),
            "--duration-s",
            str(window_s),
            "--max-outstanding",
            str(self.max_outstanding),
            "--timeout-s",
            str(self.timeout_s),
            "--out",
            out,
        )
        client = procs.spawn(
            argv, workload=self.name, cgroups=self.cgroups, cgroup=self.client_cgroup, env=procs.python_env()
        )
        try:
            stdout, stderr = client.communicate(timeout=window_s + self.timeout_s + 30.0)
        except subprocess.TimeoutExpired as e:
            raise WorkloadError(f"the client did not finish a {window_s} s window", workload=self.name) from e
        finally:
            procs.stop(client, grace_s=1.0)
        if client.returncode != 0:
            tail = stderr.decode(errors="replace")[-2000:]
            raise WorkloadError(f"client exit code {client.returncode}: {tail}", workload=self.name)
        try:
            counts = json.loads(stdout.decode().strip().splitlines()[-1])
            latencies = np.load(out)
        except (ValueError, IndexError, OSError) as e:
            raise WorkloadError(f"unreadable client result: {e}", workload=self.name) from e
        self.last_result = ProbeResult(
            latencies_us=latencies,
            scheduled=int(counts["scheduled"]),
            sent=int(counts["sent"]),
            received=int(counts["received"]),
            timed_out=int(counts["timed_out"]),
            late_sends=int(counts["late_sends"]),
            duration_s=float(counts["duration_s"]),
            rate_hz=float(counts["rate_hz"]),
        )
        return self.last_result.stats(self.slo_us)

    def stop(self) -> None:
        if self._server is not None:
            procs.stop(self._server, grace_s=2.0)
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# ---------------------------------------------------------------------------- pgbench
def _arena_user() -> pwd.struct_passwd:
    """``postgres`` if it exists, else the system user ``lumos-arena`` (created if missing).

    Raises:
        WorkloadError: the user cannot be created.
    """
    for name in ("postgres", ARENA_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    cmd = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ARENA_USER]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        return pwd.getpwnam(ARENA_USER)
    except (OSError, subprocess.SubprocessError, KeyError) as e:
        raise WorkloadError(f"cannot create user {ARENA_USER}: {e}", workload="pgbench") from e


@dataclass(frozen=True)
class PgbenchRun:
    """Details of one pgbench window beyond its `TailStats`."""

    tps: float
    log: PgbenchLog
    expected: int | None
    """``rate * window`` with ``--rate`` (pgbench schedules Poisson arrivals, so expect about ±sqrt)."""
    stdout: str = field(repr=False)


class PgbenchWorkload(_Workload):
    """A throw-away PostgreSQL cluster and pgbench (tpcb-like) against it.

    ``rate_tps=None`` is a closed loop (as fast as it can); otherwise ``-R rate_tps`` and
    latencies count from each transaction's scheduled start. The server and the pgbench
    client run in ``cgroup`` (the client in ``client_cgroup`` when given).
    """

    name = "pgbench"

    def __init__(
        self,
        rate_tps: float | None = None,
        clients: int = 4,
        scale: int = 10,
        cgroup: str | None = None,
        *,
        client_cgroup: str | None = None,
        cgroups: CgroupManager | None = None,
        slo_us: float = 5000.0,
        start_timeout_s: float = 60.0,
        init_timeout_s: float = 600.0,
    ) -> None:
        self.rate_tps = rate_tps
        self.clients = clients
        self.scale = scale
        self.cgroup = cgroup
        self.client_cgroup = client_cgroup if client_cgroup is not None else cgroup
        self.cgroups = cgroups
        self.slo_us = slo_us
        self.start_timeout_s = start_timeout_s
        self.init_timeout_s = init_timeout_s
        self.last_run: PgbenchRun | None = None
        self._tmp: str | None = None
        self._server: procs.Popen | None = None
        self._user: pwd.struct_passwd | None = None
        self._runs = 0

    @property
    def socket_dir(self) -> str:
        assert self._tmp is not None
        return os.path.join(self._tmp, "sock")

    @property
    def server_pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    def _as_user(self, argv: Sequence[str]) -> list[str]:
        assert self._user is not None
        setpriv = require("setpriv", self.name)
        return [setpriv, f"--reuid={self._user.pw_uid}", f"--regid={self._user.pw_gid}", "--init-groups", "--", *argv]

    def _env(self) -> dict[str, str]:
        assert self._tmp is not None
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self._tmp, "LC_ALL": "C", "LANG": "C"}

    def start(self) -> None:
        """initdb in a temporary directory as an unprivileged user, start the server (unix
        socket only, ``synchronous_commit=off``, ``autovacuum=off``) and load ``pgbench -i -s scale``.

        Raises:
            ToolMissingError: a PostgreSQL tool or setpriv is missing.
            WorkloadError: initdb, the server or the load failed (stderr in the message).
            CgroupError: the server cannot be placed in its cgroup.
        """
        initdb, postgres = require("initdb", self.name), require("postgres", self.name)
        pgbench, isready = require("pgbench", self.name), require("pg_isready", self.name)
        require("setpriv", self.name)
        self._user = _arena_user()
        self._tmp = tempfile.mkdtemp(prefix="lumos-pg-")
        os.chmod(self._tmp, 0o755)
        data, sock = os.path.join(self._tmp, "data"), self.socket_dir
        for d in (data, sock):
            os.mkdir(d, 0o700)
            os.chown(d, self._user.pw_uid, self._user.pw_gid)
        self._run(
            self._as_user([initdb, "-D", data, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]),
            timeout_s=120.0,
            what="initdb",
        )
        manager = _manager(self.cgroups, self.cgroup)
        self.cgroups = manager if manager is not None else self.cgroups
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": sock,
            "synchronous_commit": "off",
            "autovacuum": "off",
            "max_connections": str(max(20, self.clients + 10)),
            "logging_collector": "off",
        }
        argv = [postgres, "-D", data, *[arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]]
        self._server = procs.spawn(
            self._as_user(argv),
            workload=self.name,
            cgroups=manager,
            cgroup=self.cgroup,
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._server.poll() is not None:
                raise WorkloadError(f"postgres exited with {self._server.returncode} at start", workload=self.name)
            ready = subprocess.run(
                [isready, "-q", "-h", sock, "-U", self._user.pw_name, "-d", "postgres"],
                capture_output=True,
                timeout=10,
                env=self._env(),
                check=False,
            )
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise WorkloadError(f"postgres not ready within {self.start_timeout_s} s", workload=self.name)
            time.sleep(0.1)
        self._run(
            [pgbench, "-i", "-q", "-s", str(self.scale), "-h", sock, "-U", self._user.pw_name, "postgres"],
            timeout_s=self.init_timeout_s,
            what="pgbench -i",
        )

    def _run(self, argv: Sequence[str], *, timeout_s: float, what: str) -> str:
        proc = procs.spawn(argv, workload=self.name, env=self._env(), cwd=self._tmp)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise WorkloadError(f"{what} did not finish within {timeout_s} s", workload=self.name) from e
        finally:
            procs.stop(proc, grace_s=1.0)
        if proc.returncode != 0:
            raise WorkloadError(
                f"{what} failed ({proc.returncode}): {stderr.decode(errors='replace')[-2000:]}", workload=self.name
            )
        return stdout.decode(errors="replace")

    def measure(self, window_s: float = 10.0) -> TailStats:
        """``pgbench -c clients -j 1 -T window_s [-R rate] -l``: the window's tail from the log,
        throughput = pgbench's tps. Skipped and failed transactions count as timed out.

        Raises:
            WorkloadError: not started, pgbench failed or hung, or its log is unreadable.
            CgroupError: pgbench cannot be placed in its cgroup.
        """
        if self._server is None or self._server.poll() is not None or self._tmp is None or self._user is None:
            raise WorkloadError("the cluster is not running: start() first", workload=self.name)
        pgbench = require("pgbench", self.name)
        self._runs += 1
        logdir = os.path.join(self._tmp, f"log-{self._runs}")
        os.mkdir(logdir)
        seconds = max(1, math.ceil(window_s))
        argv = [pgbench, "-c", str(self.clients), "-j", "1", "-T", str(seconds), "-l"]
        argv += [f"--log-prefix={logdir}/pgbench_log", "-h", self.socket_dir, "-U", self._user.pw_name]
        if self.rate_tps is not None:
            argv += ["-R", str(self.rate_tps)]
        argv.append("postgres")
        proc = procs.spawn(argv, workload=self.name, cgroups=self.cgroups, cgroup=self.client_cgroup, env=self._env())
        try:
            out, err = proc.communicate(timeout=seconds + 60.0)
        except subprocess.TimeoutExpired as e:
            raise WorkloadError(f"pgbench did not finish a {seconds} s window", workload=self.name) from e
        finally:
            procs.stop(proc, first=signal.SIGINT, grace_s=2.0)
        stdout = out.decode(errors="replace")
        if proc.returncode != 0:
            raise WorkloadError(
                f"pgbench exit {proc.returncode}: {err.decode(errors='replace')[-2000:]}", workload=self.name
            )
        try:
            text = "".join(Path(p).read_text() for p in sorted(glob.glob(f"{logdir}/pgbench_log*")))
            log = parse_pgbench_log(text, rate_limited=self.rate_tps is not None)
            tps = parse_pgbench_tps(stdout)
        except (OSError, ValueError) as e:
            raise WorkloadError(f"unreadable pgbench result: {e}", workload=self.name) from e
        finally:
            shutil.rmtree(logdir, ignore_errors=True)
        expected = round(self.rate_tps * seconds) if self.rate_tps is not None else None
        self.last_run = PgbenchRun(tps=tps, log=log, expected=expected, stdout=stdout)
        return tail_stats(log.latencies_us, self.slo_us, timed_out=log.skipped + log.failed, throughput=tps)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, 15 s), then SIGKILL the group; remove the cluster."""
        if self._server is not None:
            procs.stop(self._server, first=signal.SIGINT, grace_s=15.0, group=False)
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# ---------------------------------------------------------------------------- batch
def parse_eps_line(line: str) -> tuple[float, float] | None:
    """``"[ 5s ] thds: 2 eps: 8912.34 lat ..."`` -> ``(5.0, 8912.34)``; other lines -> ``None``.

    Raises:
        Nothing.
    """
    m = _EPS_RE.match(line.strip())
    return (float(m.group(1)), float(m.group(2))) if m else None


class _EpsReader:
    """Collects ``(arrival monotonic ns, events/s)`` from a child's report lines on a thread."""

    def __init__(self, proc: procs.Popen) -> None:
        self.samples: list[tuple[int, float]] = []
        self.lock = threading.Lock()
        self._proc = proc
        self._thread = threading.Thread(target=self._read, name="lumos-eps-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for raw in self._proc.stdout:
                parsed = parse_eps_line(raw.decode(errors="replace"))
                if parsed is not None:
                    with self.lock:
                        self.samples.append((time.monotonic_ns(), parsed[1]))

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


class _ReportingSpinner(_Workload):
    """A child printing per-second ``eps`` lines; throughput over a window is their mean."""

    interval_s = 1.0

    def __init__(self, cgroup: str | None, cgroups: CgroupManager | None) -> None:
        self.cgroup = cgroup
        self.cgroups = cgroups
        self._proc: procs.Popen | None = None
        self._reader: _EpsReader | None = None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the job in its cgroup.

        Raises:
            WorkloadError: it cannot be started.
            CgroupError: it cannot be placed in its cgroup.
        """
        self.cgroups = _manager(self.cgroups, self.cgroup)
        self._proc = procs.spawn(
            self._argv(), workload=self.name, cgroups=self.cgroups, cgroup=self.cgroup, env=procs.python_env()
        )
        self._reader = _EpsReader(self._proc)

    def mark(self) -> int:
        """A point in time (monotonic ns) to measure throughput from."""
        return time.monotonic_ns()

    def events_per_s(self, since_ns: int, until_ns: int | None = None) -> float:
        """Mean events/s over the report intervals wholly inside ``[since_ns, until_ns]``; ``nan`` if none.

        Raises:
            WorkloadError: the job is not running.
        """
        if self._proc is None or self._reader is None or self._proc.poll() is not None:
            raise WorkloadError("not running", workload=self.name)
        until = until_ns if until_ns is not None else time.monotonic_ns()
        begin = since_ns + int(self.interval_s * 0.95e9)  # an interval ending here began after since_ns
        with self._reader.lock:
            inside = [eps for t, eps in self._reader.samples if begin <= t <= until]
        return float(np.mean(inside)) if inside else math.nan

    def measure(self, window_s: float = 10.0) -> float:
        """Sleep ``window_s`` and return the events/s over it.

        Raises:
            WorkloadError: the job is not running.
        """
        since = self.mark()
        time.sleep(window_s)
        return self.events_per_s(since)

    def stop(self) -> None:
        if self._proc is not None:
            procs.stop(self._proc, grace_s=2.0)
            self._proc = None
        if self._reader is not None:
            self._reader.join(2.0)
            self._reader = None


class BatchWorkload(_ReportingSpinner):
    """A CPU-bound batch job with measured throughput (events/s): ``sysbench cpu`` when installed,
    else the built-in spinner (`lumos_mcp.arena.spinner`; its events are not sysbench's)."""

    name = "batch"

    def __init__(
        self,
        threads: int = 2,
        cgroup: str | None = None,
        *,
        cgroups: CgroupManager | None = None,
        backend: Literal["auto", "sysbench", "builtin"] = "auto",
    ) -> None:
        """Raises:
        ToolMissingError: ``backend="sysbench"`` and it is not installed.
        """
        super().__init__(cgroup, cgroups)
        self.threads = threads
        sysbench = find_tool("sysbench")
        if backend == "sysbench" and sysbench is None:
            require("sysbench", self.name)
        self.backend: Literal["sysbench", "builtin"] = "sysbench" if backend != "builtin" and sysbench else "builtin"
        self._sysbench = sysbench

    def _argv(self) -> list[str]:
        if self.backend == "sysbench" and self._sysbench is not None:
            return [self._sysbench, "cpu", f"--threads={self.threads}", "--time=0", "--report-interval=1", "run"]
        return procs.python_argv("lumos_mcp.arena.spinner", "batch", "--threads", str(self.threads))


class NeighbourWorkload(_Workload):
    """An untuned best-effort CPU consumer: duty-cycled spinners using ``cpu_fraction`` CPUs in all."""

    name = "neighbour"

    def __init__(
        self,
        cpu_fraction: float = 0.9,
        cgroup: str | None = None,
        *,
        cgroups: CgroupManager | None = None,
        period_ms: float = 20.0,
    ) -> None:
        self.cpu_fraction = cpu_fraction
        self.cgroup = cgroup
        self.cgroups = cgroups
        self.period_ms = period_ms
        self._proc: procs.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the spinners in their cgroup.

        Raises:
            WorkloadError: they did not start within 15 s.
            CgroupError: they cannot be placed in their cgroup.
        """
        self.cgroups = _manager(self.cgroups, self.cgroup)
        argv = procs.python_argv(
            "lumos_mcp.arena.spinner",
            "neighbour",
            "--fraction",
            str(self.cpu_fraction),
            "--period-ms",
            str(self.period_ms),
        )
        self._proc = procs.spawn(
            argv, workload=self.name, cgroups=self.cgroups, cgroup=self.cgroup, env=procs.python_env()
        )
        line = procs.read_line(self._proc, 15.0, workload=self.name)
        if line != "ready":
            raise WorkloadError(f"unexpected first line {line!r}", workload=self.name)

    def stop(self) -> None:
        if self._proc is not None:
            procs.stop(self._proc, grace_s=2.0)
            self._proc = None


# ---------------------------------------------------------------------------- noise
@dataclass(frozen=True)
class NoiseReport:
    """CPU used during a window by everything except the arena (its cgroups and excluded pids)."""

    window_s: float
    host_cpu_s: float
    arena_cpu_s: float
    noise_cpu_s: float

    @property
    def noise_cpus(self) -> float:
        """Average number of CPUs the noise used (0.1 = a tenth of one CPU)."""
        return self.noise_cpu_s / self.window_s if self.window_s > 0 else math.nan

    def noisy(self, threshold_cpus: float = 0.1) -> bool:
        """Whether outsiders used more than ``threshold_cpus`` on average: repeat such a window."""
        return self.noise_cpus > threshold_cpus


def _pids_cpu_s(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


class NoiseWindow:
    """Filled in when its ``with noise_cpu(...)`` block ends: read `report` afterwards."""

    def __init__(self) -> None:
        self._report: NoiseReport | None = None

    @property
    def report(self) -> NoiseReport:
        """The finished window's report.

        Raises:
            RuntimeError: the window has not ended yet.
        """
        if self._report is None:
            raise RuntimeError("the noise window has not ended")
        return self._report


@contextlib.contextmanager
def noise_cpu(
    cgroups: CgroupManager, arena_cgroups: Sequence[str], exclude_pids: Sequence[int] | None = None
) -> Iterator[NoiseWindow]:
    """Measure the CPU time used during the block OUTSIDE the arena: the host's exact total
    (root ``cpuacct.usage`` on v1, root ``cpu.stat`` on v2, both in ns) minus the arena
    cgroups' usage (name each subtree once: children are included in their parent) minus the
    ``exclude_pids`` (default: this process, the orchestrator; tick-sampled, 10 ms grain).

    Raises:
        CgroupError: a usage file cannot be read.
    """
    pids = list(exclude_pids) if exclude_pids is not None else [os.getpid()]
    window = NoiseWindow()

    def snapshot() -> tuple[int, int, int, float]:
        return (
            time.monotonic_ns(),
            cgroups.usage_ns(),
            sum(cgroups.usage_ns(g) for g in arena_cgroups),
            _pids_cpu_s(pids),
        )

    t0, host0, arena0, own0 = snapshot()
    yield window
    t1, host1, arena1, own1 = snapshot()
    host_s, arena_s = (host1 - host0) / 1e9, (arena1 - arena0) / 1e9
    window._report = NoiseReport(
        window_s=(t1 - t0) / 1e9,
        host_cpu_s=host_s,
        arena_cpu_s=arena_s + (own1 - own0),
        noise_cpu_s=max(0.0, host_s - arena_s - (own1 - own0)),
    )


__all__ = [
    "ARENA_PARENT",
    "ArenaCgroups",
    "BatchWorkload",
    "NeighbourWorkload",
    "NoiseReport",
    "NoiseWindow",
    "PgbenchRun",
    "PgbenchWorkload",
    "ProbeWorkload",
    "Requirements",
    "Tool",
    "find_tool",
    "noise_cpu",
    "parse_eps_line",
    "require",
    "requirements",
]
