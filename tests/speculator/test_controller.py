"""The decision rule on synthetic signals, and the loop over a fake kernel with a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lumos_mcp.service import Service
from lumos_mcp.speculator import DecisionState, Envelope, Signal, Speculator, decide, envelope_for
from lumos_mcp.txn import TxState

ENV = Envelope(knob="cgroup.batch.cpu_shares", lo=16, hi=2048, max_step_ratio=0.5, cooldown_s=1.0, confirm_within_s=5)
KNOB = "cgroup.batch.cpu_shares"


def sig(value: float, target: float = 1.0) -> Signal:
    return Signal("p95", value, target, "ms")


def test_a_signal_far_above_target_moves_by_the_largest_step_in_the_helping_direction() -> None:
    d = decide(sig(4.0), 1024, ENV, DecisionState(), now=0.0)
    assert d.move is not None and (d.move.before, d.move.after) == (1024, 512)


def test_a_small_error_moves_by_a_smaller_step() -> None:
    d = decide(sig(1.2), 1024, ENV, DecisionState(), now=0.0)
    assert d.move is not None and 512 < d.move.after < 1024


def test_inside_the_band_it_holds() -> None:
    assert decide(sig(1.05), 1024, ENV, DecisionState(), now=0.0).move is None


def test_hysteresis_keeps_acting_until_the_target_is_reached_then_stops() -> None:
    state = decide(sig(3.0), 1024, ENV, DecisionState(), now=0.0).state
    assert state.active
    in_band = decide(sig(1.05), 512, ENV, state, now=10.0)
    assert in_band.move is not None  # above target, inside the band, but still acting
    done = decide(sig(0.9), 400, ENV, in_band.state, now=20.0)
    assert done.move is None and not done.state.active
    assert decide(sig(1.05), 400, ENV, done.state, now=30.0).move is None  # does not re-enter inside the band


def test_the_cooldown_separates_moves() -> None:
    first = decide(sig(3.0), 1024, ENV, DecisionState(), now=0.0)
    assert decide(sig(3.0), 512, ENV, first.state, now=0.5).move is None
    assert decide(sig(3.0), 512, ENV, first.state, now=1.0).move is not None


def test_moves_stay_inside_the_envelope_and_stop_at_its_floor() -> None:
    d = decide(sig(10.0), 20, ENV, DecisionState(), now=0.0)
    assert d.move is not None and d.move.after == 16
    assert decide(sig(10.0), 16, ENV, d.state, now=5.0).move is None


def test_it_flips_direction_after_repeated_worsening() -> None:
    state = DecisionState()
    value, current, now = 2.0, 1024, 0.0
    for _ in range(4):
        d = decide(sig(value), current, ENV, state, now=now)
        if d.move is not None:
            current = d.move.after
        state, value, now = d.state, value * 1.5, now + 2
    assert state.direction == 1


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_the_loop_moves_rearms_and_resumes_from_the_agents_value(make_service: Callable[..., Service]) -> None:
    clock = Clock()
    service = make_service(clock=clock)
    value = [4.0]
    spec = Speculator(service, {KNOB: envelope_for(service, KNOB)}, lambda: sig(value[0]), interval_s=1.0)
    move = spec.step()
    assert move is not None and service.backend.read(KNOB).value == move.after
    first = spec.chains[KNOB].txid
    assert first is not None and service.txns.get(first).speculative
    # holding a value that helps: it is re-armed instead of expiring
    value[0] = 1.0
    for _ in range(6):
        clock.now += 1.0
        service.expire_due()
        spec.step()
    assert service.txns.get(first).state is TxState.APPLIED and spec.stats.rearms >= 1
    # the agent writes: its value wins, the speculator's move is superseded, not reverted over it
    staged = service.stage({KNOB: 600})
    service.apply(staged.tx.id)
    service.commit(staged.tx.id)
    assert service.txns.get(first).outcome.startswith("superseded")
    clock.now += 2.0
    value[0] = 4.0
    move = spec.step()
    assert spec.stats.superseded == 1
    assert move is not None and move.before == 600
    spec.stop(revert=True)
    assert service.backend.read(KNOB).value == 600


def test_a_move_that_stops_helping_expires_back_to_the_committed_value(make_service: Callable[..., Service]) -> None:
    clock = Clock()
    service = make_service(clock=clock)
    before = service.backend.read(KNOB).value
    value = [4.0]
    spec = Speculator(service, {KNOB: envelope_for(service, KNOB)}, lambda: sig(value[0]), interval_s=1.0)
    assert spec.step() is not None
    value[0] = 9.0  # worse than when it started: not re-armed
    spec.states[KNOB] = DecisionState(active=False)
    for _ in range(8):
        clock.now += 1.0
        service.expire_due()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(spec, "_consider", lambda *a: None)
            spec.step()
    assert service.backend.read(KNOB).value == before
    assert spec.stats.expired == 1
