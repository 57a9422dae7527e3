"""Arena strategy 'ranker (zero-mod)': tunes from counters alone (Algorithm 1 of "Set It and Forget It").

The interface the arena drives (the arena owns applying, measuring and the true p99)::

    space = arena_space("lumos-arena/victim", "lumos-arena/batch")
    start = {k: v for k, v in zip(space, [1024, "max 100000"])}
    strategy = RankerStrategy(RankerModel.load(path), space, start,
                              roles={"app": "lumos-arena/victim", "other": "lumos-arena/batch"})
    for _ in range(budget):
        config = strategy.propose(history)        # history: the arena's list of past (config, result)
        result = arena.evaluate(config)           # applies config, measures one window
        strategy.observe(config, result)
    strategy.incumbent                            # the configuration it would keep

``result`` must carry the window's signature as ``result.signature`` or ``result["signature"]``
(a ``Signature`` model, its ``model_dump()``, or flat dotted metrics). Any true metric in it
(``p99_us``...) is NEVER read: decisions come from signatures only, which is the point.

Each round: the first proposal is ``start`` (to see the incumbent's signature); after that a
challenger is proposed: an untried neighbour of the incumbent (one knob moved one step in
``space``), else an untried random configuration, else the incumbent again (to refresh its
signature). On observing a challenger, its margin over the incumbent's latest signature is
computed by the gated ranker; the challenger is promoted only if the margin is at least
``delta`` (the margin rule), otherwise the incumbent is kept.

When something else computes the margin (the arena's ``ranker`` strategy asks the server's
``rank_configs`` tool), build the strategy without a model and feed it with `baseline` (a
window of the incumbent) and `settle` (a judged challenger) instead of `observe`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lumos_mcp.ranker.rules import DEFAULT_DELTA, decide

if TYPE_CHECKING:  # scikit-learn is an optional extra; the search itself does not need it
    from lumos_mcp.ranker.model import RankerModel

Value = int | bool | str
Config = dict[str, Value]


def arena_space(app_cgroup: str, other_cgroup: str) -> dict[str, list[Value]]:
    """The knobs the shipped model was trained on, as a strategy space: the co-runner's
    ``cpu_shares`` (log-spaced) and the app's ``cpu_max``. (``cpu_idle`` is left out: on cgroup v1
    it cannot be combined with a shares change in one step.) Start from shares 1024, no limit."""
    return {
        f"cgroup.{other_cgroup}.cpu_shares": [64, 128, 256, 512, 1024, 2048, 4096, 8192],
        f"cgroup.{app_cgroup}.cpu_max": ["max 100000", "150000 100000", "100000 100000", "60000 100000"],
    }


def _key(config: Mapping[str, Value]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in config.items()))


def signature_of(result: Any) -> Mapping[str, Any]:
    """The signature inside an arena result (attribute or key), as a mapping.

    Raises:
        ValueError: the result has no signature.
    """
    sig = result.get("signature") if isinstance(result, Mapping) else getattr(result, "signature", None)
    if sig is None:
        raise ValueError("the ranker strategy needs result.signature (it never reads the true metric)")
    if hasattr(sig, "model_dump"):
        dumped: Mapping[str, Any] = sig.model_dump(mode="json")
        return dumped
    if not isinstance(sig, Mapping):
        raise ValueError(f"unusable signature of type {type(sig).__name__}")
    return sig


@dataclass(frozen=True)
class Decision:
    challenger: Config
    margin: float
    archetype: str
    promoted: bool


class RankerStrategy:
    name = "ranker (zero-mod)"

    def __init__(
        self,
        model: RankerModel | None,
        space: Mapping[str, Sequence[Value]],
        start: Mapping[str, Value],
        *,
        delta: float | None = None,
        roles: Mapping[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        """``model`` None: the caller judges challengers (`settle`); ``delta`` then defaults to 0.2.

        Raises:
            ValueError: ``start`` is not in ``space``.
        """
        for k, v in start.items():
            if k not in space or v not in space[k]:
                raise ValueError(f"start value {k}={v!r} is not in the space")
        self.model = model.with_roles(roles) if roles is not None and model is not None else model
        self.space = {k: list(v) for k, v in space.items()}
        self.delta = delta if delta is not None else (model.delta if model is not None else DEFAULT_DELTA)
        self.incumbent: Config = dict(start)
        self.incumbent_signature: Mapping[str, Any] | None = None
        self.tried: set[tuple[tuple[str, str], ...]] = set()
        self.decisions: list[Decision] = []
        self._rng = random.Random(seed)

    def _neighbours(self, config: Config) -> list[Config]:
        out = []
        for k, values in self.space.items():
            i = values.index(config[k]) if config.get(k) in values else 0
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    out.append({**config, k: values[j]})
        return out

    def propose(self, history: Sequence[Any] = ()) -> Config:
        """The next configuration to measure (``history`` is accepted for the interface, not needed)."""
        if self.incumbent_signature is None:
            return dict(self.incumbent)
        fresh = [c for c in self._neighbours(self.incumbent) if _key(c) not in self.tried]
        if fresh:
            return self._rng.choice(fresh)
        for _ in range(50):
            c = {k: self._rng.choice(v) for k, v in self.space.items()}
            if _key(c) not in self.tried:
                return c
        return dict(self.incumbent)

    def observe(self, config: Mapping[str, Value], result: Any) -> Decision | None:
        """Take a measured window's signature; promote the challenger if its margin >= delta.

        Raises:
            ValueError: the result carries no signature, or a challenger came without a model to judge it.
        """
        sig = signature_of(result)
        if self.baseline(config, sig):
            return None
        if self.model is None or self.incumbent_signature is None:
            raise ValueError("no model here: judge the challenger elsewhere and call settle()")
        margin, gate = self.model.compare(sig, self.incumbent_signature)
        return self.settle(config, sig, margin, gate.label)

    def rebase(self) -> None:
        """The workload changed (a rate shift, a neighbour arriving): the incumbent's signature and
        the verdicts on what was tried no longer hold. The next proposal measures the incumbent again."""
        self.incumbent_signature = None
        self.tried.clear()

    def mark_tried(self, config: Mapping[str, Value]) -> None:
        """Do not propose ``config`` again as a fresh challenger (it was measured, judged or not)."""
        self.tried.add(_key(config))

    def baseline(self, config: Mapping[str, Value], signature: Mapping[str, Any]) -> bool:
        """Take a window of the incumbent (or the first window, which makes ``config`` the incumbent).

        Returns False, changing nothing but the tried set, when ``config`` is a challenger to judge.
        """
        config = dict(config)
        self.tried.add(_key(config))
        if _key(config) != _key(self.incumbent) and self.incumbent_signature is not None:
            return False
        if self.incumbent_signature is None:
            self.incumbent = config
        self.incumbent_signature = signature
        return True

    def settle(
        self,
        config: Mapping[str, Value],
        signature: Mapping[str, Any],
        margin: float,
        archetype: str,
        promoted: bool | None = None,
    ) -> Decision:
        """Record a challenger judged at ``margin`` over the incumbent's latest signature; promote it
        by the margin rule, or as ``promoted`` says when the judge (``rank_configs``) applied the rule."""
        config = dict(config)
        self.tried.add(_key(config))
        if promoted is None:
            promoted = decide(margin, self.delta, 1, 0) == 1
        decision = Decision(config, margin, archetype, promoted)
        self.decisions.append(decision)
        if promoted:
            self.incumbent, self.incumbent_signature = config, signature
        return decision
