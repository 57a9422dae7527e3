"""Child processes for the arena: each in its own session, placed in its cgroup before it runs,
and always stopped with bounded waits (signal the group, then SIGKILL the group).

A child that must start inside a cgroup is held at a gate (``sh -c 'read -r _; exec "$@"'``)
until its pid has been written to the group's ``cgroup.procs``; ``exec`` keeps the pid, so
the program and everything it forks is inside from its first instruction.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from lumos_mcp.errors import CgroupError, WorkloadError
from lumos_mcp.kernelfs.cgroups import CgroupManager

_GATE = ["/bin/sh", "-c", 'read -r _ || exit 111; exec "$@"', "lumos-gate"]
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])

Popen = subprocess.Popen[bytes]


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``python -m lumos_mcp...`` children: this checkout first on the path.

    Raises:
        Nothing.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def spawn(
    argv: Sequence[str],
    *,
    workload: str,
    cgroups: CgroupManager | None = None,
    cgroup: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    stderr: int | IO[bytes] | None = subprocess.PIPE,
) -> Popen:
    """Start ``argv`` in a new session; with ``cgroup``, only after it has been attached there.

    Raises:
        WorkloadError: the program cannot be started.
        CgroupError: it cannot be attached (the child is killed first).
        ValueError: ``cgroup`` without ``cgroups``.
    """
    if cgroup is not None and cgroups is None:
        raise ValueError("a cgroup needs a CgroupManager")
    gated = cgroup is not None
    try:
        proc = subprocess.Popen(
            [*_GATE, *argv] if gated else list(argv),
            stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as e:
        raise WorkloadError(f"cannot start {argv[0]}: {e}", workload=workload) from e
    if cgroup is not None and cgroups is not None:
        try:
            cgroups.attach(cgroup, proc.pid)
        except CgroupError:
            stop(proc)
            raise
        assert proc.stdin is not None
        try:
            proc.stdin.write(b"go\n")
            proc.stdin.close()
            proc.stdin = None  # so that communicate() does not touch the closed pipe
        except BrokenPipeError as e:
            stop(proc)
            raise WorkloadError(f"{argv[0]} exited at its start gate", workload=workload) from e
    return proc


def stop(proc: Popen, *, first: signal.Signals = signal.SIGTERM, grace_s: float = 5.0, group: bool = True) -> None:
    """Stop ``proc`` and its process group: ``first`` (to the group, or only to the leader with
    ``group=False``), up to ``grace_s`` to exit, then SIGKILL to the whole group. Never hangs.

    Raises:
        Nothing: a process that is already gone is fine.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, first)
        else:
            os.kill(proc.pid, first)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # The leader may be gone while children of its group live on: always sweep the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def read_line(proc: Popen, timeout_s: float, *, workload: str) -> str:
    """One line of the child's stdout within ``timeout_s`` (read byte-wise, nothing buffered away).

    Raises:
        WorkloadError: timeout, or the child closed stdout (its stderr tail is in the message).
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buf = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkloadError(f"no output line within {timeout_s:.1f} s", workload=workload)
            if not sel.select(left):
                continue
            chunk = os.read(fd, 1)
            if not chunk:
                raise WorkloadError(f"exited early: {stderr_tail(proc)}", workload=workload)
            if chunk == b"\n":
                return buf.decode(errors="replace")
            buf += chunk


def stderr_tail(proc: Popen, limit: int = 2000) -> str:
    """The last ``limit`` characters of an exited child's stderr (empty if not captured).

    Raises:
        Nothing.
    """
    if proc.stderr is None:
        return f"exit code {proc.poll()}"
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2.0)
    try:
        data = proc.stderr.read() if proc.poll() is not None else b""
    except OSError:
        data = b""
    return f"exit code {proc.poll()}: " + data.decode(errors="replace")[-limit:].strip()


__all__ = ["PACKAGE_PARENT", "Popen", "python_argv", "python_env", "read_line", "spawn", "stderr_tail", "stop"]
