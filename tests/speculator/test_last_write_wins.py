"""Last write wins, proved over many interleavings of agent and speculator on a fake kernel.

The invariant checked after every step (and after recovery from a crash at any journal
point): a knob held by an applied transaction shows that transaction's value; a knob held by
none shows its committed baseline (the original, or the last committed value); and every
value ever seen is one somebody chose (the original, or a value the agent or the
speculator applied).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumos_mcp.audit import iter_records
from lumos_mcp.errors import ConflictError, LumosError
from lumos_mcp.kernelfs.fake import typical_host
from lumos_mcp.resources import policy_path
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.txn import TxState

KNOB = "cgroup.batch.cpu_shares"


class Crash(BaseException):
    """Raised by the probe at a chosen journal point, as kill -9 would stop the server there."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    base: Path
    clock: Clock = field(default_factory=Clock)
    crash_at: str | None = None
    service: Service | None = None

    def probe(self, label: str) -> None:
        if self.crash_at is not None and label == self.crash_at:
            self.crash_at = None
            raise Crash(label)

    def start(self) -> Service:
        config = ServiceConfig(
            mode="live",
            state_dir=self.base / "state",
            policy=policy_path("latency"),
            host_root=self.base / "kernel",
            telemetry_root=self.base / "kernel",
            cgroups=("batch",),
            perf=False,
        )
        self.service = Service(config, clock=self.clock, probe=self.probe)
        self.service.start()
        return self.service

    def live(self) -> int:
        assert self.service is not None
        value = self.service.backend.read(KNOB).value
        assert isinstance(value, int)
        return value


@dataclass
class Model:
    baseline: int
    chosen: set[int]
    agent_staged: list[str] = field(default_factory=list)
    agent_applied: list[str] = field(default_factory=list)
    spec_applied: list[str] = field(default_factory=list)


def check(world: World, model: Model) -> None:
    service = world.service
    assert service is not None
    live = world.live()
    assert live in model.chosen, f"{live} was chosen by nobody ({sorted(model.chosen)})"
    holder = service.txns.holder_of(KNOB)
    if holder is None:
        assert live == model.baseline, f"unheld knob at {live}, committed baseline {model.baseline}"
    else:
        tx = service.txns.get(holder)
        assert tx.state is TxState.APPLIED
        assert live == next(c.after for c in tx.changes if c.knob == KNOB)
        # whoever holds it restores the committed baseline, never an intermediate speculative value
        assert next(c.before for c in tx.changes if c.knob == KNOB) == model.baseline


OPS = st.one_of(
    st.tuples(st.just("spec_move"), st.floats(0.76, 1.24)),
    st.tuples(st.just("agent_stage"), st.floats(0.5, 1.5)),
    st.tuples(st.just("agent_apply"), st.integers(0, 3)),
    st.tuples(st.just("agent_commit"), st.integers(0, 3)),
    st.tuples(st.just("agent_revert"), st.integers(0, 3)),
    st.tuples(st.just("spec_revert"), st.integers(0, 3)),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 2.0, 6.0, 11.0])),
    st.tuples(
        st.just("crash_in_apply"),
        st.sampled_from(
            [
                "apply:before-begin",
                "apply:after-begin",
                "apply:after-intent:0",
                "apply:after-write:0",
                "apply:after-armed",
            ]
        ),
    ),
    st.tuples(st.just("crash_in_commit"), st.sampled_from(["commit:before-record", "commit:after-record"])),
    st.tuples(st.just("restart"), st.just(0)),
)


def _pick(items: list[str], index: int) -> str | None:
    return items[index % len(items)] if items else None


def _apply(world: World, model: Model, txid: str, actor: str) -> None:
    service = world.service
    assert service is not None
    tx = service.apply(txid, actor=actor)
    model.chosen.add(int(next(c.after for c in tx.changes)))  # type: ignore[call-overload]
    (model.spec_applied if tx.speculative else model.agent_applied).append(txid)


def run(world: World, model: Model, op: str, arg: float) -> None:
    service = world.service
    assert service is not None
    live = world.live()
    if op == "spec_move":
        staged = service.stage({KNOB: max(128, min(2048, round(live * arg)))}, speculative=True, actor="speculator")
        if staged.verdict.allowed:
            _apply(world, model, staged.tx.id, "speculator")
    elif op == "agent_stage":
        staged = service.stage({KNOB: max(2, round(live * arg))}, actor="agent")
        model.agent_staged.append(staged.tx.id)
    elif op == "agent_apply" and (txid := _pick(model.agent_staged, int(arg))):
        _apply(world, model, txid, "agent")
    elif op == "agent_commit" and (txid := _pick(model.agent_applied, int(arg))):
        tx = service.commit(txid)
        model.baseline = int(next(c.after for c in tx.changes))  # type: ignore[call-overload]
    elif op == "agent_revert" and (txid := _pick(model.agent_applied, int(arg))):
        service.revert(txid)
    elif op == "spec_revert" and (txid := _pick(model.spec_applied, int(arg))):
        service.revert(txid, actor="speculator")
    elif op == "tick":
        world.clock.now += arg
        service.expire_due()


def crash_and_recover(world: World, model: Model) -> None:
    assert world.service is not None
    world.service.close()
    world.start()
    model.agent_staged.clear()
    model.agent_applied.clear()
    model.spec_applied.clear()
    assert world.live() == model.baseline, "recovery left the knob off its committed baseline"
    assert world.service is not None and world.service.txns.holder_of(KNOB) is None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=25))
def test_no_interleaving_leaves_a_knob_at_a_value_nobody_chose(ops: list[tuple[str, float | str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        typical_host(base / "kernel")
        world = World(base)
        world.start()
        model = Model(baseline=world.live(), chosen={world.live()})
        try:
            for op, arg in ops:
                if op == "restart":
                    crash_and_recover(world, model)
                    continue
                if op in ("crash_in_apply", "crash_in_commit"):
                    assert isinstance(arg, str)
                    world.crash_at = arg
                    try:
                        run_some_write(world, model, commit=op == "crash_in_commit")
                    except Crash:
                        crash_and_recover(world, model)
                        continue
                    finally:
                        world.crash_at = None
                else:
                    assert not isinstance(arg, str)
                    # refusals (conflict, cooldown, approval, external change) are fine
                    with contextlib.suppress(LumosError):
                        run(world, model, op, float(arg))
                check(world, model)
        finally:
            if world.service is not None:
                world.service.close()


def run_some_write(world: World, model: Model, *, commit: bool) -> None:
    """An agent write that may take the knob over from a speculative move, where the crash hits."""
    service = world.service
    assert service is not None
    if commit:
        txid = _pick(model.agent_applied, 0)
        if txid is None:
            return
        after = int(next(c.after for c in service.txns.get(txid).changes))  # type: ignore[call-overload]
        try:
            service.commit(txid)
        except LumosError:
            return
        except Crash as crash:
            if str(crash) == "commit:after-record":  # the commit record is durable: it counts
                model.baseline = after
            raise
        model.baseline = after
        return
    live = world.live()
    staged = service.stage({KNOB: max(2, round(live * 0.8))}, actor="agent")
    # the value is chosen once the agent asks to apply it, crash or not
    model.chosen.add(int(staged.tx.changes[0].after))  # type: ignore[call-overload]
    try:
        _apply(world, model, staged.tx.id, "agent")
    except LumosError:
        return


def _speculative_then_agent(world: World) -> tuple[Service, str, str]:
    service = world.start()
    spec = service.stage({KNOB: 900}, speculative=True, actor="speculator")
    service.apply(spec.tx.id, actor="speculator")
    agent = service.stage({KNOB: 600})
    service.apply(agent.tx.id)
    return service, spec.tx.id, agent.tx.id


def test_agent_apply_supersedes_the_speculative_move_and_its_revert_restores_the_original(tmp_path: Path) -> None:
    typical_host(tmp_path / "kernel")
    world = World(tmp_path)
    service, spec_id, agent_id = _speculative_then_agent(world)
    try:
        assert world.live() == 600
        spec = service.txns.get(spec_id)
        assert (spec.state, spec.outcome) == (TxState.COMMITTED, f"superseded by {agent_id}")
        events = [e for e in iter_records(service.audit.path) if e["event"] == "superseded"]
        assert events[-1]["tx"] == spec_id and events[-1]["by"] == agent_id
        service.revert(agent_id)
        assert world.live() == 1024
        assert service.txns.holder_of(KNOB) is None
    finally:
        service.close()


def test_the_speculator_never_overrides_the_agents_pending_change(tmp_path: Path) -> None:
    typical_host(tmp_path / "kernel")
    world = World(tmp_path)
    service = world.start()
    try:
        agent = service.stage({KNOB: 800})
        service.apply(agent.tx.id)
        world.clock.now += 5
        spec = service.stage({KNOB: 700}, speculative=True, actor="speculator")
        with pytest.raises(ConflictError):
            service.apply(spec.tx.id, actor="speculator")
        assert world.live() == 800
    finally:
        service.close()


@pytest.mark.parametrize("crash_at", ["apply:after-begin", "apply:after-intent:0", "apply:after-write:0"])
def test_a_crash_during_the_take_over_restores_the_original_on_next_start(tmp_path: Path, crash_at: str) -> None:
    typical_host(tmp_path / "kernel")
    world = World(tmp_path)
    service = world.start()
    spec = service.stage({KNOB: 900}, speculative=True, actor="speculator")
    service.apply(spec.tx.id, actor="speculator")
    agent = service.stage({KNOB: 600})
    world.crash_at = crash_at
    with pytest.raises(Crash):
        service.apply(agent.tx.id)
    service.close()
    service = world.start()
    try:
        assert world.live() == 1024
    finally:
        service.close()


def test_a_speculative_move_expires_back_to_the_agents_committed_value(tmp_path: Path) -> None:
    typical_host(tmp_path / "kernel")
    world = World(tmp_path)
    service = world.start()
    try:
        agent = service.stage({KNOB: 800})
        service.apply(agent.tx.id)
        service.commit(agent.tx.id)
        world.clock.now += 2
        spec = service.stage({KNOB: 700}, speculative=True, actor="speculator")
        service.apply(spec.tx.id, actor="speculator")
        assert world.live() == 700
        world.clock.now += 60
        service.expire_due()
        assert world.live() == 800
    finally:
        service.close()
