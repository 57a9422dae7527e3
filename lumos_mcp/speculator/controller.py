"""The speculator's controller: a pure decision rule and the loop that acts on it.

``decide`` is a bounded, sign-learning step controller with hysteresis on a cost signal
(lower is better, e.g. a p95 latency) against a target:

* it starts acting when the signal is above ``target * (1 + band)`` and keeps acting until
  the signal is back at or below the target (hysteresis: no flapping at the edge);
* each move goes in the direction believed to lower the cost, by at most the envelope's
  largest step (scaled down when the error is small), clamped to the envelope's bounds;
* after ``flip_after`` moves in a row each followed by a worse signal, it flips direction;
* a cooldown (the envelope's, never less than one interval) separates moves.

`Speculator` runs it once per interval. Each move is a speculative transaction staged and
applied through the service (policy envelope, journal, audit, short deadline). A move is
re-armed while it keeps helping (the signal is no worse than when the chain of moves began)
and otherwise left to expire, which restores the value from before the chain. The
speculator never commits: only the agent makes a value permanent, and the agent's apply
takes the knob over (last write wins, see `TransactionManager.apply`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio

from lumos_mcp.errors import InvalidValueError, LumosError, ModeError, SpeculatorStateError
from lumos_mcp.policy import match_rule
from lumos_mcp.txn import TxState

if TYPE_CHECKING:
    from lumos_mcp.service import Service
    from lumos_mcp.telemetry.facade import Telemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Envelope:
    """Where one knob may move speculatively: bounds, largest step, cooldown, deadline."""

    knob: str
    lo: int
    hi: int
    max_step_ratio: float
    cooldown_s: float
    confirm_within_s: float


@dataclass(frozen=True)
class Signal:
    """A cost to lower (``value``) and what counts as good (``target``), both in ``unit``."""

    name: str
    value: float
    target: float
    unit: str = ""


@dataclass(frozen=True)
class DecisionState:
    direction: int = -1
    """The knob direction (+1 up, -1 down) believed to lower the cost."""
    active: bool = False
    """Inside the hysteresis loop: acting until the signal is back at the target."""
    last_move_at: float | None = None
    last_move_dir: int = 0
    signal_at_move: float | None = None
    worse_streak: int = 0


@dataclass(frozen=True)
class Move:
    knob: str
    before: int
    after: int
    reason: str


@dataclass(frozen=True)
class Decision:
    move: Move | None
    state: DecisionState
    why: str


def decide(
    signal: Signal,
    current: int,
    envelope: Envelope,
    state: DecisionState,
    now: float,
    *,
    band: float = 0.1,
    flip_after: int = 3,
) -> Decision:
    """One period's decision for one knob (pure: no clock, no I/O)."""
    # learn from the last move: did the cost get worse after it?
    streak = state.worse_streak
    direction = state.direction
    if state.signal_at_move is not None and state.last_move_dir != 0:
        if signal.value > state.signal_at_move * (1 + band):
            streak += 1
        elif signal.value < state.signal_at_move * (1 - band):
            streak = 0
    if streak >= flip_after:
        direction, streak = -direction, 0
    learned = replace(state, direction=direction, worse_streak=streak)

    error = (signal.value - signal.target) / signal.target if signal.target > 0 else math.inf
    active = learned.active
    if not active and error > band:
        active = True
    elif active and error <= 0:
        active = False
    learned = replace(learned, active=active)
    if not active:
        return Decision(
            None, learned, f"{signal.name} {signal.value:.4g} within {band:.0%} of target {signal.target:g}"
        )
    if state.last_move_at is not None and now - state.last_move_at < envelope.cooldown_s:
        return Decision(None, learned, f"cooldown ({envelope.cooldown_s:g} s)")
    ratio = envelope.max_step_ratio * min(1.0, max(error, band))
    step = max(1, math.floor(abs(current) * ratio)) if current else 1
    target = current + direction * step
    target = min(max(target, envelope.lo), envelope.hi)
    if target == current:
        return Decision(None, learned, f"at the envelope's {'floor' if direction < 0 else 'ceiling'} {current}")
    reason = (
        f"{signal.name} {signal.value:.4g}{signal.unit} is {error:+.0%} vs target {signal.target:g}{signal.unit}: "
        f"{'lower' if direction < 0 else 'raise'} {envelope.knob}"
    )
    moved = replace(learned, last_move_at=now, last_move_dir=direction, signal_at_move=signal.value)
    return Decision(Move(envelope.knob, current, target, reason), moved, reason)


def envelope_for(service: Service, knob: str, bounds: tuple[int, int] | None = None) -> Envelope:
    """The policy's speculation envelope for a concrete knob, optionally narrowed by ``bounds``.

    Raises:
        KnobError: an unknown knob; InvalidValueError: outside the envelope, not an int knob,
            or bounds that do not fit inside the envelope.
    """
    spec = service.catalog.lookup(knob).spec
    found = match_rule(service.policy, service.policy.speculation.knobs, knob, spec.kind)
    if found is None or spec.kind != "int":
        raise InvalidValueError(
            f"not in the speculation envelope of policy {service.policy.name!r} (or not an integer knob)",
            knob=knob,
            value="",
        )
    rule = found[1]
    lo = rule.min if rule.min is not None else (spec.min if spec.min is not None else 0)
    hi = rule.max if rule.max is not None else (spec.max if spec.max is not None else 2**31)
    knob_rule = match_rule(service.policy, service.policy.knobs, knob, spec.kind)
    if knob_rule is not None:
        lo = max(lo, knob_rule[1].min if knob_rule[1].min is not None else lo)
        hi = min(hi, knob_rule[1].max if knob_rule[1].max is not None else hi)
    if bounds is not None:
        if bounds[0] > bounds[1] or bounds[0] < lo or bounds[1] > hi:
            raise InvalidValueError(f"bounds must be tighter than the envelope [{lo}, {hi}]", knob=knob, value=bounds)
        lo, hi = bounds
    confirm = (
        rule.confirm_within_s if rule.confirm_within_s is not None else service.policy.speculation.confirm_within_s
    )
    return Envelope(
        knob=knob,
        lo=lo,
        hi=hi,
        max_step_ratio=rule.max_step_ratio if rule.max_step_ratio is not None else 0.1,
        cooldown_s=rule.cooldown_s,
        confirm_within_s=confirm,
    )


SignalSource = Callable[[], Signal | None]


def trend_signal(
    telemetry: Telemetry, metric: str, target: float, window_s: float = 3.0, baseline_s: float = 30.0
) -> SignalSource:
    """The current-window mean of a trends metric (``app.<name>`` for reported app metrics)."""

    def read() -> Signal | None:
        try:
            trends = telemetry.trends(window_s, baseline_s)
        except LumosError:
            return None
        found = trends.metrics.get(metric)
        if found is None:
            return None
        return Signal(name=metric, value=found.current_mean, target=target)

    return read


@dataclass
class _Chain:
    """The speculator's live hold on one knob."""

    txid: str | None = None
    signal_at_start: float | None = None


@dataclass
class _Stats:
    moves: int = 0
    rearms: int = 0
    expired: int = 0
    superseded: int = 0
    refused: int = 0
    last_move: dict[str, Any] | None = None
    last_signal: dict[str, Any] | None = None
    last_why: str = ""
    errors: list[str] = field(default_factory=list)


class Speculator:
    """Every ``interval_s``: read the signal, decide per knob, make at most one move."""

    def __init__(
        self,
        service: Service,
        envelopes: Mapping[str, Envelope],
        signal: SignalSource,
        *,
        interval_s: float = 1.0,
        band: float = 0.1,
        actor: str = "speculator",
    ) -> None:
        if not envelopes:
            raise InvalidValueError("the speculator needs at least one knob", knob="", value="{}")
        if not interval_s > 0:
            raise InvalidValueError("interval_s must be > 0", knob="", value=interval_s)
        self.service = service
        self.envelopes = dict(envelopes)
        self.signal = signal
        self.interval_s = interval_s
        self.band = band
        self.actor = actor
        self.states = {k: DecisionState() for k in self.envelopes}
        self.chains = {k: _Chain() for k in self.envelopes}
        self.stats = _Stats()
        self.running = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._cursor = 0

    # ------------------------------------------------------------------ one period
    def step(self) -> Move | None:
        """One period: account for moves that ended, read the signal, re-arm or move."""
        with self._lock:
            self._settle()
            signal = self.signal()
            if signal is None:
                self.stats.last_why = "no signal yet"
                return None
            self.stats.last_signal = {"name": signal.name, "value": signal.value, "target": signal.target}
            self._rearm(signal)
            now = self.service.clock()
            knobs = list(self.envelopes)
            for i in range(len(knobs)):
                knob = knobs[(self._cursor + i) % len(knobs)]
                move = self._consider(knob, signal, now)
                if move is not None:
                    self._cursor = (self._cursor + i + 1) % len(knobs)
                    return move
            return None

    def _settle(self) -> None:
        for knob, chain in self.chains.items():
            if chain.txid is None:
                continue
            tx = self.service.txns.get(chain.txid)
            if tx.state is TxState.APPLIED:
                continue
            if tx.outcome.startswith("superseded"):
                self.stats.superseded += 1  # the agent's write won; resume from its value
            elif tx.outcome == "deadline":
                self.stats.expired += 1
            self.chains[knob] = _Chain()

    def _rearm(self, signal: Signal) -> None:
        for chain in self.chains.values():
            if chain.txid is None or chain.signal_at_start is None:
                continue
            tx = self.service.txns.get(chain.txid)
            due = tx.deadline is not None and tx.deadline - self.service.clock() <= 2 * self.interval_s
            helping = signal.value <= chain.signal_at_start * (1 + self.band)
            if due and helping:
                try:
                    self.service.rearm(chain.txid, actor=self.actor)
                    self.stats.rearms += 1
                except LumosError as e:
                    self._error(f"rearm {chain.txid}: {e}")

    def _consider(self, knob: str, signal: Signal, now: float) -> Move | None:
        try:
            current = self.service.backend.read(knob).value
        except LumosError as e:
            self._error(f"read {knob}: {e}")
            return None
        if not isinstance(current, int) or isinstance(current, bool):
            self._error(f"{knob} reads {current!r}, not an integer")
            return None
        holder = self.service.txns.holder_of(knob)
        chain = self.chains[knob]
        if holder is not None and holder != chain.txid:
            self.stats.last_why = f"{knob} is held by {holder} (the agent's pending change wins)"
            return None
        decision = decide(signal, current, self.envelopes[knob], self.states[knob], now, band=self.band)
        self.stats.last_why = decision.why
        if decision.move is None:
            self.states[knob] = decision.state
            return None
        move = decision.move
        try:
            staged = self.service.stage({knob: move.after}, speculative=True, actor=self.actor)
            if not staged.verdict.allowed:
                self.stats.refused += 1
                self.stats.last_why = "; ".join(d.message for d in staged.verdict.denials)
                return None
            tx = self.service.apply(staged.tx.id, actor=self.actor)
        except LumosError as e:
            self.stats.refused += 1
            self._error(f"move {knob} -> {move.after}: {e}")
            return None
        self.states[knob] = decision.state
        start = chain.signal_at_start if chain.txid is not None else signal.value
        self.chains[knob] = _Chain(txid=tx.id, signal_at_start=start)
        self.stats.moves += 1
        self.stats.last_move = {
            "knob": knob,
            "before": move.before,
            "after": move.after,
            "txid": tx.id,
            "reason": move.reason,
            "at": now,
        }
        return move

    def _error(self, message: str) -> None:
        log.info("speculator: %s", message)
        self.stats.last_why = message
        self.stats.errors = [*self.stats.errors[-9:], message]

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Until `stop`: one `step` per interval (on a worker thread: it reads and writes files)."""
        self.running = True
        self._stop.clear()
        try:
            while not self._stop.is_set():
                await anyio.to_thread.run_sync(self.step)
                with anyio.move_on_after(self.interval_s):
                    while not self._stop.is_set():
                        await anyio.sleep(min(0.05, self.interval_s))
        finally:
            self.running = False

    def stop(self, revert: bool = True) -> list[str]:
        """Stop the loop; with ``revert``, undo the moves it still holds now (else they expire).

        Returns the txids reverted.
        """
        self._stop.set()
        done = []
        with self._lock:
            for knob, chain in self.chains.items():
                if chain.txid is None:
                    continue
                if revert and self.service.txns.get(chain.txid).state is TxState.APPLIED:
                    try:
                        self.service.revert(chain.txid, actor=self.actor)
                        done.append(chain.txid)
                    except LumosError as e:
                        self._error(f"revert {chain.txid}: {e}")
                self.chains[knob] = _Chain()
        return done

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "running": self.running,
                "interval_s": self.interval_s,
                "band": self.band,
                "knobs": {
                    k: {
                        "lo": e.lo,
                        "hi": e.hi,
                        "max_step_ratio": e.max_step_ratio,
                        "confirm_within_s": e.confirm_within_s,
                        "holding": self.chains[k].txid,
                        "direction": "down" if self.states[k].direction < 0 else "up",
                        "active": self.states[k].active,
                    }
                    for k, e in self.envelopes.items()
                },
                "moves": self.stats.moves,
                "rearms": self.stats.rearms,
                "expired": self.stats.expired,
                "superseded": self.stats.superseded,
                "refused": self.stats.refused,
                "last_move": self.stats.last_move,
                "reacting_to": self.stats.last_signal,
                "why": self.stats.last_why,
                "recent_errors": list(self.stats.errors),
            }


def start_speculator(
    service: Service,
    knobs: list[str],
    metric: str,
    target: float,
    bounds: Mapping[str, tuple[int, int]] | None = None,
    interval_s: float = 1.0,
) -> Speculator:
    """Start a speculator on ``knobs`` in the service's task group, steering ``metric`` to ``target``.

    Raises:
        ModeError: observe mode (its moves would write).
        SpeculatorStateError: one is already running, or no server loop runs.
        InvalidValueError: a knob outside the policy's speculation envelope, or bounds outside it.
    """
    if service.mode == "observe":
        raise ModeError("speculator_start writes; restart with --mode sandbox or --mode live", mode="observe")
    if isinstance(service.speculator, Speculator) and service.speculator.running:
        raise SpeculatorStateError("already running: speculator_stop first")
    if service.task_group is None:
        raise SpeculatorStateError("no server loop to run in (start it from a running server)")
    envelopes = {k: envelope_for(service, k, (bounds or {}).get(k)) for k in knobs}
    window = max(2.0, 2 * interval_s)
    spec = Speculator(
        service, envelopes, trend_signal(service.telemetry, metric, target, window_s=window), interval_s=interval_s
    )
    service.speculator = spec
    service.audit.append("speculator_start", knobs=list(knobs), metric=metric, target=target, interval_s=interval_s)
    service.task_group.start_soon(spec.run)
    return spec


def stop_speculator(service: Service, revert: bool = True) -> list[str]:
    """Stop the service's speculator; returns the txids of the moves it reverted now.

    Raises:
        ModeError: observe mode (no speculator runs there; stopping one is a write tool).
        SpeculatorStateError: none was started.
    """
    if service.mode == "observe":
        raise ModeError("speculator_stop writes; restart with --mode sandbox or --mode live", mode="observe")
    spec = service.speculator
    if not isinstance(spec, Speculator):
        raise SpeculatorStateError("not running")
    reverted = spec.stop(revert=revert)
    service.audit.append("speculator_stop", reverted=reverted, moves=spec.stats.moves)
    return reverted
