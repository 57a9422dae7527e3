"""Crash injection: SIGKILL a real server process at chosen and at random moments, restart,
and compare every knob with what the journal proves.

A *zygote* subprocess imports lumos-mcp once and forks one child per run, so a kill costs
milliseconds, not an interpreter start. A child builds a ``Service`` over the shared fake
kernel tree (live mode on a fake ``host_root``), recovers, and runs a seeded random sequence
of stage / apply / commit / revert / auto-revert. Its ``probe`` (called by the transaction
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
from pathlib import Path
from typing import IO, Any, NoReturn

import orjson

from lumos_mcp.errors import LumosError
from lumos_mcp.kernelfs.root import TMP_PREFIX
from lumos_mcp.selftest.common import APPROVAL_ALWAYS, BOUNDS, Bed, Outcome, changed, knob_values, make_bed, snapshot

_LABEL_BYTES = 256
RECOVERY_POINTS = (
    "recover/recover:before-record",
    "recover/recover:after-restore:0",
    "recover/recover:after-restore:1",
    "recover/recover:after-record",
)
_CHILD_LIMIT_S = 60.0


# --------------------------------------------------------------------------- the child
def _change(rng: random.Random) -> dict[str, int]:
    knobs = rng.sample(sorted(set(BOUNDS) - APPROVAL_ALWAYS), rng.randint(1, 3))
    out = {k: rng.randint(*BOUNDS[k]) for k in knobs}
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
        service = bed.service(clock=lambda: time.time() + offset[0], probe=probe)
        for _ in range(spec["ops"]):
            op = rng.choice(("commit", "commit", "revert", "auto_revert", "stage", "leave_armed"))
            context[0] = "stage"
            probe("stage:begin")
            try:
                staged = service.stage(_change(rng))
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

    def expected(self, files: dict[str, set[str]]) -> dict[str, Any]:
        """Each knob's value by the journal; a knob that is another view of a committed knob's
        file (cgroup v1 ``cpu_weight`` over ``cpu.shares``) is checked through that knob."""
        moved = {f for k in self.committed for f in files.get(k, set())}
        views = {k for k, fs in files.items() if k not in self.committed and fs & moved}
        return {k: v for k, v in {**self.originals, **self.committed}.items() if k not in views}


def run(base: Path, trials: int = 100, seed: int = 1, ops: int = 6) -> Outcome:
    """``trials`` kill-and-recover trials on one fake host under ``base``.

    Figures: trials, kills, kill points covered, knobs checked, mismatches (must be 0),
    unaccounted files (must be 0), audit chain breaks (must be 0).
    """
    from lumos_mcp.audit import verify

    out = Outcome("crash")
    bed = make_bed(base)
    first = bed.service()
    truth = _Truth(knob_values(first))
    files = {k: set(first.backend.resolve(k).files) for k in truth.originals}
    knob_files = {f for k in BOUNDS for f in files[k]}
    first.close()
    tree0 = snapshot(bed.tree)
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
            figures["knobs_checked"] += 1
            if values.get(knob) != want:
                figures["mismatches"] += 1
                out.fail(f"trial {trial}: {knob} is {values.get(knob)!r}, the journal says {want!r}")
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


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        sys.exit(_zygote())
    raise SystemExit("usage: python -m lumos_mcp.selftest.crash --zygote (started by lumos-mcp selftest)")
