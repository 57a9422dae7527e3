"""Crash injection: SIGKILL a real server process at chosen and at random moments, restart,
and compare every knob with what the journal proves.

A *zygote* subprocess imports lumos-mcp once and forks one child per run, so a kill costs
milliseconds, not an interpreter start. A child builds a ``Service`` over the shared fake
kernel tree (live mode on a fake ``host_root``), recovers, and runs a seeded random sequence
of stage / apply / commit / revert / auto-revert / guard revert. Its ``probe`` (called by the transaction
manager at every crash point, and by the child between operations) SIGKILLs the child at a
targeted point; in *timer* runs the zygote SIGKILLs it after a random delay instead, and a
shared page says which point it had passed. *Recovery* trials kill one child with a
transaction open, then kill the next child inside its own recovery.

After each trial the parent reads the journal (before anything compacts it), adds every newly
committed transaction to the truth (committed values kept, everything else original), starts a
fresh ``Service`` (which recovers), and checks every knob, every file of the tree and the audit
chain.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, Any, NoReturn

import orjson

from lumos_mcp.errors import LumosError
from lumos_mcp.kernelfs.root import TMP_PREFIX
from lumos_mcp.kernelfs.tasks import TASKS_FILE, FakeTasks, parse_selector
from lumos_mcp.selftest.common import (
    APPROVAL_ALWAYS,
    BOUNDS,
    TASK_BOUNDS,
    Bed,
    Outcome,
    changed,
    knob_values,
    make_bed,
    snapshot,
)

_LABEL_BYTES = 256
RECOVERY_POINTS = (
    "recover/recover:before-record",
    "recover/recover:after-restore:0",
    "recover/recover:after-restore:1",
    "recover/recover:after-record",
)
_CHILD_LIMIT_S = 60.0


# --------------------------------------------------------------------------- the child
_MOVED = {**BOUNDS, **TASK_BOUNDS}

_GUARD = {"metric": "psi.cpu.some.avg10_pct", "value": 50.0, "hold_samples": 1}


class _Breaching:
    """A metric source whose next sample breaches `_GUARD` (the crash test's guard reverts)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    @staticmethod
    def _sig(value: float) -> dict[str, Any]:
        return {"psi": {"cpu": {"some": {"avg10_pct": value}}}}

    def samples_after(self, t: float, limit: int = 64) -> list[tuple[float, Any]]:
        return [(max(t, self.clock()) + 1.0, self._sig(99.0))]

    def recent(self, n: int) -> list[tuple[float, Any]]:
        return [(self.clock() - 1.0, self._sig(1.0))]

    def unavailable(self) -> dict[str, str]:
        return {}


def _change(rng: random.Random) -> dict[str, int]:
    knobs = rng.sample(sorted(set(_MOVED) - APPROVAL_ALWAYS), rng.randint(1, 3))
    out = {k: rng.randint(*_MOVED[k]) for k in knobs}
    if "vm.dirty_ratio" in out or "vm.dirty_background_ratio" in out:
        # mostly satisfy the cross rule (background < dirty) so most changes get through
        out["vm.dirty_ratio"] = rng.randint(25, 50)
        out["vm.dirty_background_ratio"] = rng.randint(1, 20)
    return out


def _child(spec: dict[str, Any], page: mmap.mmap) -> NoReturn:
    """Run one server life; never returns (SIGKILL, or ``os._exit``)."""
    bed = Bed(
        base=Path(spec["base"]),
        tree=Path(spec["tree"]),
        state_dir=Path(spec["state"]),
        policy=Path(spec["policy"]),
    )
    target: str | None = spec.get("target")
    seen: list[str] = []
    context = ["recover"]
    offset = [0.0]

    def probe(label: str) -> None:
        full = f"{context[0]}/{label}"
        seen.append(full)
        data = full.encode()[: _LABEL_BYTES - 1]
        page[:_LABEL_BYTES] = data + b"\0" * (_LABEL_BYTES - len(data))
        if full == target:
            os.kill(os.getpid(), signal.SIGKILL)

    rng = random.Random(spec["seed"])
    code = 0
    try:
        service = bed.service(clock=lambda: time.time() + offset[0], probe=probe, start=False)
        service.backend.tasks.probe = probe  # kill points between the tasks of a task knob
        service.start()
        for _ in range(spec["ops"]):
            op = rng.choice(("commit", "commit", "revert", "auto_revert", "guard_revert", "stage", "leave_armed"))
            context[0] = "stage"
            probe("stage:begin")
            try:
                guards = [_GUARD] if op == "guard_revert" else []
                if guards:
                    service.metrics = _Breaching(service.clock)
                staged = service.stage(_change(rng), guards=guards)
                probe("stage:end")
                if op == "stage" or not staged.verdict.allowed:
                    continue
                context[0] = "apply"
                service.apply(staged.tx.id)
                probe("apply:returned")
                if op == "commit":
                    context[0] = "commit"
                    service.commit(staged.tx.id)
                    probe("commit:returned")
                elif op == "revert":
                    context[0] = "revert"
                    service.revert(staged.tx.id)
                    probe("revert:returned")
                elif op == "guard_revert":
                    context[0] = "guard_revert"
                    probe("guard_revert:begin")
                    service.check_guards()
                    probe("guard_revert:returned")
                elif op == "auto_revert":
                    context[0] = "auto_revert"
                    offset[0] += 100_000.0
                    probe("auto_revert:begin")
                    service.expire_due()
                    probe("auto_revert:returned")
            except LumosError:
                continue  # conflicts with a transaction left armed, denials: typed, expected
        service.close()
    except BaseException as e:  # noqa: BLE001 - the forked child's top level: it must never unwind into the zygote
        page[:_LABEL_BYTES] = (f"!{type(e).__name__}: {e}".encode()[: _LABEL_BYTES - 1]).ljust(_LABEL_BYTES, b"\0")
        code = 3
    with contextlib.suppress(OSError):
        # atomically: the parent's random-timer SIGKILL may land mid-write
        tmp = Path(spec["seen"] + ".tmp")
        tmp.write_bytes(orjson.dumps(sorted(set(seen))))
        os.replace(tmp, spec["seen"])
    os._exit(code)


# --------------------------------------------------------------------------- the zygote
def _zygote() -> int:
    """Read one JSON spec per line, run it in a forked child, answer one JSON line."""
    page = mmap.mmap(-1, _LABEL_BYTES)
    for line in sys.stdin.buffer:
        spec = orjson.loads(line)
        page[:_LABEL_BYTES] = b"\0" * _LABEL_BYTES
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(spec, page)
        kill_at = started + spec["delay_s"] if spec.get("delay_s") is not None else None
        limit = started + _CHILD_LIMIT_S
        status = 0
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            now = time.monotonic()
            if (kill_at is not None and now >= kill_at) or now >= limit:
                os.kill(pid, signal.SIGKILL)
                kill_at = None
                if now >= limit:
                    limit = now + 5.0
            time.sleep(0.0005)
        label = page[:_LABEL_BYTES].rstrip(b"\0").decode(errors="replace")
        answer = {
            "pid": pid,
            "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "last": label,
            "elapsed_s": time.monotonic() - started,
        }
        sys.stdout.buffer.write(orjson.dumps(answer) + b"\n")
        sys.stdout.buffer.flush()
    return 0


class Zygote:
    """The parent's handle on a zygote process (always stopped by ``close``)."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=_package_parent())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lumos_mcp.selftest.crash", "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        self._buf = b""

    def run(self, spec: dict[str, Any], timeout_s: float = 90.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(orjson.dumps(spec) + b"\n")
        line = _read_line(self.proc.stdout, self, timeout_s)
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _read_line(stream: IO[bytes], z: Zygote, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    while b"\n" not in z._buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer from the crash zygote within {timeout_s} s")
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"crash zygote exited (code {z.proc.poll()})")
            z._buf += chunk
    line, _, z._buf = z._buf.partition(b"\n")
    return line


def _package_parent() -> str:
    import lumos_mcp

    parent = str(Path(lumos_mcp.__file__).resolve().parent.parent)
    extra = os.environ.get("PYTHONPATH")
    return parent + (os.pathsep + extra if extra else "")


# --------------------------------------------------------------------------- the parent
class _Truth:
    """Committed values, from the journal as each child left it."""

    def __init__(self, originals: dict[str, Any]) -> None:
        self.originals = dict(originals)
        self.committed: dict[str, Any] = {}
        self._seen: set[str] = set()
        self.tasks0: dict[str, Any] = {}
        """The fake's task table at the start: every task's own original attributes."""

    def absorb(self, journal: Path) -> None:
        from lumos_mcp.txn.journal import scan

        begins: dict[str, dict[str, Any]] = {}
        for r in scan(journal).records:
            if r.get("t") == "begin":
                begins[r["tx"]] = r
            elif r.get("t") == "commit" and r.get("tx") not in self._seen:
                self._seen.add(r["tx"])
                for k in begins[r["tx"]]["knobs"]:
                    self.committed[k["knob"]] = k["after"]

    def expected_tasks(self) -> dict[str, Any]:
        """The task table the journal proves: each task its original, except the attribute of a
        committed task knob, which every task of its selector holds (no task is born or exits
        in the crash test, so the selection is fixed)."""
        table = orjson.loads(orjson.dumps(self.tasks0))
        for knob, value in self.committed.items():
            if not knob.startswith("task."):
                continue
            selector_text, attr = knob[len("task.") :].rsplit(".", 1)
            selector = parse_selector(selector_text)
            for task in table.values():
                if (selector.kind == "cgroup" and task["cgroup"] == selector.value) or (
                    selector.kind == "comm" and task["comm"] == selector.value
                ):
                    if attr == "slice_us":
                        task["slice_ns"] = int(value) * 1000
                    else:
                        task[attr] = int(value)
        return dict(table)

    def expected(self, files: dict[str, set[str]]) -> dict[str, Any]:
        """Each knob's value by the journal; a knob that is another view of a committed knob's
        file (cgroup v1 ``cpu_weight`` over ``cpu.shares``) is checked through that knob."""
        moved = {f for k in self.committed for f in files.get(k, set())}
        views = {k for k, fs in files.items() if k not in self.committed and fs & moved}
        return {k: v for k, v in {**self.originals, **self.committed}.items() if k not in views}


def run(base: Path, trials: int = 100, seed: int = 1, ops: int = 6, exit_trials: int = 1) -> Outcome:
    """``trials`` kill-and-recover trials on one fake host under ``base``, then ``exit_trials``
    real servers per kind of exit with a change armed (`run_exits`).

    Figures: trials, kills, kill points covered, knobs checked, mismatches (must be 0),
    unaccounted files (must be 0), audit chain breaks (must be 0), and `run_exits`' figures.
    """
    out = _run_kills(base / "kills", trials, seed, ops)
    if exit_trials:
        exits = run_exits(base / "exits", trials=exit_trials)
        out.figures.update(exits.figures)
        for problem in exits.problems:
            out.fail(f"exits: {problem}")
    return out


def _run_kills(base: Path, trials: int, seed: int, ops: int) -> Outcome:
    from lumos_mcp.audit import verify

    out = Outcome("crash")
    bed = make_bed(base)
    first = bed.service()
    truth = _Truth(knob_values(first))
    files = {k: set(first.backend.resolve(k).files) for k in truth.originals}
    knob_files = {f for k in BOUNDS for f in files[k]} | {TASKS_FILE}
    first.close()
    tree0 = snapshot(bed.tree)
    truth.tasks0 = FakeTasks(first.kernel).load()["tasks"]
    rng = random.Random(seed)
    known: set[str] = set(RECOVERY_POINTS)
    covered: set[str] = set()
    durations = [0.05]
    figures: dict[str, Any] = {
        "trials": 0,
        "kills": 0,
        "targeted_kills": 0,
        "timer_kills": 0,
        "recovery_kills": 0,
        "knobs_checked": 0,
        "mismatches": 0,
        "unaccounted_files": 0,
        "audit_breaks": 0,
        "child_errors": 0,
    }
    zygote = Zygote()
    try:
        for trial in range(trials):
            kind = rng.choices(("targeted", "timer", "recovery"), weights=(5, 3, 2))[0]
            phases: list[dict[str, Any]] = []
            if kind == "recovery":
                # first leave a transaction open (killed mid-apply), then kill inside recovery
                phases.append({"target": f"apply/apply:after-write:{rng.randint(0, 1)}"})
                if rng.random() < 0.7:
                    phases.append({"target": rng.choice(RECOVERY_POINTS)})
                else:
                    phases.append({"delay_s": rng.uniform(0, 0.02)})
            elif kind == "targeted":
                fresh = sorted(known - covered - set(RECOVERY_POINTS))
                pool = fresh if fresh and rng.random() < 0.7 else sorted(known - set(RECOVERY_POINTS))
                phases.append({"target": rng.choice(pool) if pool else None})
            else:
                phases.append({"delay_s": rng.uniform(0, max(durations[-20:]))})
            for phase in phases:
                spec = {
                    "base": str(bed.base),
                    "tree": str(bed.tree),
                    "state": str(bed.state_dir),
                    "policy": str(bed.policy),
                    "seen": str(bed.base / "seen.json"),
                    "seed": rng.getrandbits(32),
                    "ops": ops,
                    **phase,
                }
                (bed.base / "seen.json").unlink(missing_ok=True)
                answer = zygote.run(spec)
                if answer["killed"]:
                    figures["kills"] += 1
                    point = phase.get("target") or ("~" + answer["last"] if answer["last"] else "~start")
                    covered.add(point)
                    if phase.get("target"):
                        figures["targeted_kills"] += 1
                    else:
                        figures["timer_kills"] += 1
                    if point.startswith(("recover/", "~recover/")):
                        figures["recovery_kills"] += 1
                else:
                    durations.append(answer["elapsed_s"])
                    if answer["code"] != 0:
                        figures["child_errors"] += 1
                        out.fail(f"trial {trial}: child exited {answer['code']}: {answer['last']}")
                with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError):
                    known.update(orjson.loads((bed.base / "seen.json").read_bytes()))
                truth.absorb(bed.state_dir / "journal-live.jsonl")
            _verify(bed, truth, files, tree0, knob_files, figures, out, trial, verify)
            figures["trials"] += 1
    finally:
        zygote.close()
    targeted = sorted(p for p in covered if not p.startswith("~"))
    figures["kill_points_covered"] = len(targeted)
    figures["kill_points_known"] = len(known)
    figures["random_kill_positions"] = len(covered) - len(targeted)
    figures["kill_points"] = targeted
    out.figures = figures
    return out


def _verify(
    bed: Bed,
    truth: _Truth,
    files: dict[str, set[str]],
    tree0: dict[str, bytes],
    knob_files: set[str],
    figures: dict[str, Any],
    out: Outcome,
    trial: int,
    verify: Any,
) -> None:
    service = bed.service()  # restart: takes the lock and recovers
    try:
        report = service.recovery
        assert report is not None
        if any(k.action == "error" for k in report.knobs):
            out.fail(f"trial {trial}: recovery could not restore {report.knobs}")
        values = knob_values(service)
        for knob, want in truth.expected(files).items():
            if knob.startswith("task."):  # two selectors can share tasks: the task table below is exact
                continue
            figures["knobs_checked"] += 1
            if values.get(knob) != want:
                figures["mismatches"] += 1
                out.fail(f"trial {trial}: {knob} is {values.get(knob)!r}, the journal says {want!r}")
        tasks = FakeTasks(service.kernel).load()["tasks"]
        for tid, want_task in truth.expected_tasks().items():
            figures["knobs_checked"] += 1
            if tasks.get(tid) != want_task:
                figures["mismatches"] += 1
                out.fail(f"trial {trial}: task {tid} is {tasks.get(tid)}, the journal says {want_task}")
    finally:
        service.close()
    stray = [
        f for f in changed(tree0, snapshot(bed.tree)) if f not in knob_files and not Path(f).name.startswith(TMP_PREFIX)
    ]
    if stray:
        figures["unaccounted_files"] += len(stray)
        out.fail(f"trial {trial}: files changed that no knob accounts for: {stray}")
    audit = verify(bed.state_dir / "audit.jsonl")
    if not audit.ok:
        figures["audit_breaks"] += 1
        out.fail(f"trial {trial}: audit chain broken: {audit}")


# --------------------------------------------------------------------------- the server's exits
EXITS = ("eof", "sigterm", "sigint", "sigkill")
EXIT_CHANGE = {"vm.swappiness": 30}
"""What an exit trial's server applies (the bed's original is 60)."""
_EXIT_SIGNALS = {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT, "sigkill": signal.SIGKILL}


def _serve_child(base: Path, confirm_s: float) -> int:
    """A real ``serve`` process on a bed (live mode on its fake tree, with the watchdog, as
    ``lumos-mcp serve`` runs): apply `EXIT_CHANGE` with a ``confirm_s`` deadline, then serve MCP
    over stdio through ``serve``'s own lifecycle until stdin ends or a signal stops it. Once
    it handles the stop signals it writes ``base/ready.json`` (pids, txid, deadline)."""
    from lumos_mcp.server import build_server
    from lumos_mcp.serving import describe, run_until_stopped

    bed = Bed(base=base, tree=base / "kernel", state_dir=base / "state", policy=base / "selftest-policy.toml")
    service = bed.service(watchdog=True)
    staged = service.stage(EXIT_CHANGE, confirm_within_s=confirm_s)
    tx = service.apply(staged.tx.id)
    info = {"pid": os.getpid(), "watchdog_pid": service.watchdog_pid, "deadline": tx.deadline, "tx": tx.id}

    def ready() -> None:
        tmp = base / "ready.json.tmp"
        tmp.write_bytes(orjson.dumps(info))
        os.replace(tmp, base / "ready.json")

    return run_until_stopped(service, build_server(service).run_stdio_async, describe(service, "stdio"), ready)


class ServerUnderTest:
    """A `_serve_child` process on a fresh bed at ``base`` (`wait_ready` until its change is armed)."""

    def __init__(self, base: Path, confirm_s: float) -> None:
        self.bed = make_bed(base)
        env = dict(os.environ, PYTHONPATH=_package_parent())
        with open(base / "stderr", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lumos_mcp.selftest.crash", "--serve", str(base), str(confirm_s)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        self.pid = self.proc.pid
        self.watchdog_pid: int | None = None
        self.deadline = 0.0
        self.txid = ""

    def ready(self) -> bool:
        """True once the change is armed and stop signals are handled (reads its pids then).

        Raises:
            RuntimeError: the server exited before it was ready.
        """
        path = self.bed.base / "ready.json"
        if not path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"exit-trial server died at start: {self.stderr()[-1000:]}")
            return False
        info = orjson.loads(path.read_bytes())
        self.watchdog_pid, self.deadline, self.txid = info["watchdog_pid"], info["deadline"], info["tx"]
        return True

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Raises: RuntimeError: not ready within ``timeout_s`` (the process is stopped)."""
        if not wait_until(self.ready, timeout_s):
            self.stop()
            raise RuntimeError(f"exit-trial server not ready within {timeout_s} s: {self.stderr()[-1000:]}")

    def value(self) -> str:
        return (self.bed.tree / "proc/sys/vm/swappiness").read_text().strip()

    def end(self, how: str) -> None:
        """End the server as a host would: close its stdin (``eof``) or send a signal."""
        if how == "eof":
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        else:
            self.proc.send_signal(_EXIT_SIGNALS[how])

    def stderr(self) -> str:
        return (self.bed.base / "stderr").read_text(errors="replace")

    def stop(self) -> None:
        """Make sure the server is gone (killed if it still runs) and its pipes closed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` every 10 ms until it holds or ``timeout_s`` passes."""
    until = time.monotonic() + max(timeout_s, 0.0)
    while not condition():
        if time.monotonic() >= until:
            return False
        time.sleep(0.01)
    return True


def _is_original(server: ServerUnderTest) -> bool:
    return server.value() == "60"


def _exited(server: ServerUnderTest) -> bool:
    return server.proc.poll() is not None


def run_exits(base: Path, trials: int = 1, confirm_s: float = 3.0, kinds: tuple[str, ...] = EXITS) -> Outcome:
    """``trials`` real servers per kind of exit (stdin EOF, SIGTERM, SIGINT, SIGKILL), each with
    a change armed for ``confirm_s``; after the exit the live value must be back at its original
    by the deadline + 2 s, with no new server started and no process left.

    Figures: exit_trials, exits_late (must be 0), exit_processes_left (must be 0),
    exit_revert_max_s (longest exit-to-original time), per-kind maxima.
    """
    out = Outcome("crash")
    late = left = 0
    slowest: dict[str, float] = {}
    batch = 4  # servers at once: a few seconds of wall time for the short form
    plan = [(kind, n) for n in range(trials) for kind in kinds]
    for start in range(0, len(plan), batch):
        servers = [(kind, ServerUnderTest(base / f"{kind}-{n}", confirm_s)) for kind, n in plan[start : start + batch]]
        try:
            # end each server as soon as its change is armed, so every deadline is still ahead
            ended: dict[int, float] = {}
            until = time.monotonic() + 60.0
            while len(ended) < len(servers) and time.monotonic() < until:
                for i, (kind, server) in enumerate(servers):
                    if i in ended or not server.ready():
                        continue
                    if server.value() != "30" or server.watchdog_pid is None:
                        out.fail(f"{kind}: the change was not armed with a watchdog ({server.value()})")
                    server.end(kind)
                    ended[i] = time.monotonic()
                time.sleep(0.01)
            for i, (kind, server) in enumerate(servers):
                if i not in ended:
                    late += 1
                    out.fail(f"{kind}: the server was not ready within 60 s: {server.stderr()[-300:]}")
                    continue
                back = wait_until(partial(_is_original, server), server.deadline + 2.0 - time.time())
                if not back:
                    late += 1
                    out.fail(f"{kind}: swappiness still {server.value()} at deadline + 2 s: {server.stderr()[-300:]}")
                slowest[kind] = max(slowest.get(kind, 0.0), time.monotonic() - ended[i])
        finally:
            for kind, server in servers:
                if not wait_until(partial(_exited, server), 5.0):
                    left += 1
                    out.fail(f"{kind}: the server process did not exit")
                server.stop()
                wd = server.watchdog_pid
                if wd is not None and not wait_until(partial(process_gone, wd), 5.0):
                    left += 1
                    out.fail(f"{kind}: the watchdog (pid {wd}) outlived its work")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(wd, signal.SIGKILL)
    out.figures = {
        "exit_trials": len(plan),
        "exits_late": late,
        "exit_processes_left": left,
        "exit_revert_max_s": round(max(slowest.values(), default=0.0), 2),
        **{f"exit_revert_max_s_{kind}": round(v, 2) for kind, v in slowest.items()},
    }
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        sys.exit(_zygote())
    if sys.argv[1:2] == ["--serve"] and len(sys.argv) == 4:
        sys.exit(_serve_child(Path(sys.argv[2]), float(sys.argv[3])))
    raise SystemExit("usage: python -m lumos_mcp.selftest.crash --zygote | --serve DIR CONFIRM_S (started by selftest)")
