"""Tuning strategies, pluggable: anything with ``name``, ``reset``, ``propose`` and ``observe``.

A strategy only proposes configurations; the runner writes each one through the MCP tools
(stage, apply, measure, commit or revert), so every strategy goes through the same
transaction path with the same trial budget and window. Strategies that reason over the MCP
tools themselves (the expert agent, the LLM agent) get the tools in ``propose``. A strategy
may also decide keep or revert itself with a ``judge`` hook (`lumos_mcp.arena.runner.Judge`):
the zero-mod ranker does, from counter signatures alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from lumos_mcp.agents import expert, llm
from lumos_mcp.arena.problems import Config, KnobRange, Problem, Value, log_uniform
from lumos_mcp.arena.ranker_lab.strategy import RankerStrategy
from lumos_mcp.arena.runner import ArenaToolError, ArenaTools, TrialRecord

log = logging.getLogger(__name__)


class StrategyUnavailable(Exception):
    """The strategy cannot run here (a missing package or key); the reason is reported."""


class Strategy(Protocol):
    name: str

    def reset(self, problem: Problem, seed: int) -> None:
        """Start a fresh run.

        Raises:
            StrategyUnavailable: it cannot run on this machine.
        """

    async def propose(self, history: Sequence[TrialRecord], tools: ArenaTools) -> Config: ...

    def observe(self, config: Config, record: TrialRecord) -> None: ...


def _penalised(record: TrialRecord) -> float:
    """What a model-based strategy is told: the objective, plus 1 (worse than any fraction) when infeasible."""
    return record.objective + (0.0 if record.feasible else 1.0)


class Default:
    """Untuned: the kernel's defaults on every trial (measures the noise floor of 'doing nothing')."""

    name = "default"

    def reset(self, problem: Problem, seed: int) -> None:
        self.problem = problem

    async def propose(self, history: Sequence[TrialRecord], tools: ArenaTools) -> Config:
        return self.problem.defaults()

    def observe(self, config: Config, record: TrialRecord) -> None:
        return None


def _sample(k: KnobRange, rng: random.Random) -> Value:
    if k.kind == "bool":
        return rng.random() < 0.5
    if k.kind == "int_log":
        return log_uniform(k.low, k.high, rng.random())
    return rng.randint(k.low, k.high)


class RandomSearch:
    """Uniform (log-uniform for shares) samples of the whole box."""

    name = "random"

    def reset(self, problem: Problem, seed: int) -> None:
        self.problem = problem
        self.rng = random.Random(seed)

    async def propose(self, history: Sequence[TrialRecord], tools: ArenaTools) -> Config:
        return {k.knob_id: _sample(k, self.rng) for k in self.problem.knobs}

    def observe(self, config: Config, record: TrialRecord) -> None:
        return None


class _Optuna:
    """Optuna's ask/tell interface; an infeasible trial is told its objective plus 1."""

    name = "optuna"

    def _sampler(self, seed: int) -> Any:
        raise NotImplementedError

    def reset(self, problem: Problem, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.problem = problem
        self.study = optuna.create_study(direction="minimize", sampler=self._sampler(seed))
        self.dists: dict[str, Any] = {}
        for k in problem.knobs:
            if k.kind == "bool":
                self.dists[k.knob_id] = optuna.distributions.CategoricalDistribution([False, True])
            else:
                self.dists[k.knob_id] = optuna.distributions.IntDistribution(k.low, k.high, log=k.kind == "int_log")
        self.pending: Any = None

    async def propose(self, history: Sequence[TrialRecord], tools: ArenaTools) -> Config:
        self.pending = self.study.ask(self.dists)
        return {k: self.pending.params[k] for k in self.dists}

    def observe(self, config: Config, record: TrialRecord) -> None:
        if self.pending is not None:
            self.study.tell(self.pending, _penalised(record))
            self.pending = None


class OptunaTPE(_Optuna):
    name = "optuna-tpe"

    def _sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)


class OptunaGP(_Optuna):
    """Optuna's GPSampler (needs torch)."""

    name = "optuna-gp"

    def _sampler(self, seed: int) -> Any:
        import optuna

        if importlib.util.find_spec("torch") is None:
            raise StrategyUnavailable("optuna's GPSampler needs torch: pip install 'lumos-mcp[gp]'")
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=3)


class ExpertAgentStrategy:
    """The built-in expert agent's rules over the MCP tools.

    Every proposal starts from ``list_tunables`` (current values and the policy's bounds) and
    ``read_telemetry`` (the host signature), both through MCP, and `lumos_mcp.agents.expert.propose`'s
    rules: under CPU pressure (PSI) lower a cgroup's CPU weight (here ``cpu.shares``) fourfold,
    within the policy's step. While a move improves
    the tail and keeps the batch floor, it keeps lowering the same knob; a move that is worse
    (by more than ``worse_tolerance``) or breaks the floor is reverted by the runner and that
    knob is done. When no rule fires it holds the incumbent (the real agent would stop).
    """

    name = "expert"

    def __init__(self, worse_tolerance: float = 0.10) -> None:
        self.worse_tolerance = worse_tolerance

    def reset(self, problem: Problem, seed: int) -> None:
        self.problem = problem
        self.tried: set[str] = set()
        self.last: tuple[str, ...] = ()
        self.incumbent = math.inf
        self.rules: list[str] = []

    async def propose(self, history: Sequence[TrialRecord], tools: ArenaTools) -> Config:
        tunables = (await tools.call("list_tunables", {"only_allowed": True}))["tunables"]
        current: Config = {t["id"]: t["value"] for t in tunables if t["id"] in self.problem.knob_ids}
        config = {**self.problem.defaults(), **current}
        if not history:
            self.last = ()
            return config  # first look: measure where the host is
        # the agent's evidence, read as the real agent reads it: the host signature over MCP (its
        # rules fire on PSI and fault rates, so an empty signature would make it hold forever)
        telemetry = await tools.call(
            "read_telemetry", {"window_s": self.problem.window_s, "sections": ["psi", "memory"]}
        )
        signature = telemetry["signature"]
        mine = [t for t in tunables if t["id"] in self.problem.knob_ids]
        # the arena knows which group is the latency-sensitive one (the real agent is told)
        proposal = expert.propose(signature, mine, self.tried, frozenset({f"{self.problem.parent}/victim"}))
        if proposal is None:
            self.last = ()
            self.rules.append("hold")
            return config
        self.last = tuple(proposal.changes)
        self.rules.append(f"{proposal.rule}: {proposal.changes}")
        for knob, value in proposal.changes.items():
            config[knob] = value if isinstance(value, bool) else int(value)
        return config

    def observe(self, config: Config, record: TrialRecord) -> None:
        worse = record.objective > self.incumbent * (1 + self.worse_tolerance) + 1e-4
        if self.last and (not record.feasible or worse or record.action != "commit"):
            self.tried.update(self.last)
        if record.feasible and record.objective < self.incumbent:
            self.incumbent = record.objective


class LLMAgentStrategy:
    """An LLM proposing each configuration from the problem and the history, on any model that
    `lumos_mcp.agents.llm.LLMConfig.from_env` configures (Anthropic, or an OpenAI-compatible
    endpoint). Skipped when none is configured or its SDK is missing. Counts tokens and cost."""

    name = "llm"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = env

    def reset(self, problem: Problem, seed: int) -> None:
        env = dict(os.environ if self.env is None else self.env)
        if env.get("LUMOS_ARENA_LLM_MODEL") and not env.get("LUMOS_LLM_MODEL"):  # the older name still works
            env["LUMOS_LLM_MODEL"] = env["LUMOS_ARENA_LLM_MODEL"]
        try:
            self.config = llm.LLMConfig.from_env(env)
            llm.sdk(self.config.provider)  # fails now, not mid-run, when the SDK is missing
        except llm.LLMUnavailable as e:
            raise StrategyUnavailable(str(e)) from e
        self.problem = problem
        self.usage = llm.Usage(
            price_in_per_mtok=self.config.price_in_per_mtok, price_out_per_mtok=self.config.price_out_per_mtok
        )

    async def propose(self, history: Sequence[TrialRecord], tools: ArenaTools) -> Config:
        tunables = (await tools.call("list_tunables", {"only_allowed": True}))["tunables"]
        knobs = [
            {"id": t["id"], "value": t["value"], "description": t["description"], "policy": t["policy"]}
            for t in tunables
            if t["id"] in self.problem.knob_ids
        ]
        past = [
            {"config": r.config, "frac_over_slo": r.measurement.frac_over_slo, "p99_us": r.measurement.p99_us,
             "batch_eps": r.measurement.batch_eps, "feasible": r.feasible}
            for r in history
        ]  # fmt: skip
        prompt = (
            f"Tune a live Linux host. Goal: {self.problem.title}. Minimise the probe's fraction of requests over "
            f"{self.problem.slo_us:.0f} us while the batch job keeps >= {self.problem.floor_fraction:.0%} of its "
            f"default throughput. Knobs: {json.dumps(knobs)}. Trials so far: {json.dumps(past)}. "
            "Answer with one JSON object mapping knob id to value, nothing else."
        )
        text, used = await llm.ask(self.config, prompt)
        self.usage.add(used.input_tokens, used.output_tokens)
        log.info("llm %s: %s", self.config.describe(), self.usage.line())
        try:
            raw = json.loads(text[text.index("{") : text.rindex("}") + 1])
        except ValueError:
            return self.problem.defaults()
        if not isinstance(raw, dict):
            return self.problem.defaults()
        return {k.knob_id: k.clip(raw.get(k.knob_id, k.default)) for k in self.problem.knobs}

    def observe(self, config: Config, record: TrialRecord) -> None:
        return None


def ranker_space(problem: Problem) -> dict[str, list[Value]]:
    """The ranker's search space: each knob's sweep grid plus its default, ascending (bools: False,
    True). Its neighbour search moves one knob one step of this ladder per trial."""
    space: dict[str, list[Value]] = {}
    for k in problem.knobs:
        if k.kind == "bool":
            space[k.knob_id] = [False, True]
        else:
            space[k.knob_id] = sorted({int(v) for v in (*k.grid, k.default)})
    return space


class RankerArenaStrategy:
    """The zero-mod ranker (`lumos_mcp.arena.ranker_lab.strategy.RankerStrategy`) in the arena: it proposes
    the defaults first, then untried one-step neighbours of its incumbent in `ranker_space`, and
    decides keep or revert itself (`judge`) by asking the server's ``rank_configs`` tool whether
    the challenger's window signature beats the incumbent's by the margin ``delta``.

    It never reads a record's true metric (``measurement``, ``objective``, ``feasible``): only
    ``config``, ``signature``, ``signature_error``, ``index`` and ``decided_by``. It does not
    know the batch floor either (the model was trained on the app's metric alone), so it can keep
    a configuration the arena scores infeasible. The arena measures its true tail like any other's.
    """

    name = "ranker"
    label = "ranker (zero-mod)"

    def __init__(self, model_path: Path | None = None, delta: float | None = None) -> None:
        self.model_path = model_path
        self.delta = delta
        self.rules: list[str] = []

    def reset(self, problem: Problem, seed: int) -> None:
        if importlib.util.find_spec("sklearn") is None:
            raise StrategyUnavailable("the ranker needs scikit-learn: pip install 'lumos-mcp[ranker]'")
        from lumos_mcp.server import ranker as server_ranker

        path = self.model_path or server_ranker.DEFAULT_MODEL
        manifest = path / "manifest.json"
        if not manifest.is_file():
            raise StrategyUnavailable(f"no ranker model at {path}: train one with `python -m lumos_mcp.ranker train`")
        try:
            delta = float(json.loads(manifest.read_text())["delta"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StrategyUnavailable(f"unreadable ranker manifest {manifest}: {e}") from e
        self.problem = problem
        self.roles = {"app": f"{problem.parent}/victim", "other": f"{problem.parent}/batch"}
        self.search = RankerStrategy(
            None,
            ranker_space(problem),
            problem.defaults(),
            delta=self.delta if self.delta is not None else delta,
            seed=seed,
        )
        self.rules = []

    def _config(self, config: Mapping[str, int | bool | str]) -> Config:
        out: Config = {}
        for k in self.problem.knobs:
            v = config[k.knob_id]
            out[k.knob_id] = k.clip(int(v) if isinstance(v, str) else v)
        return out

    def _short(self, config: Mapping[str, Any]) -> str:
        return ", ".join(f"{k.short}={config[k.knob_id]}" for k in self.problem.knobs)

    async def propose(self, history: Sequence[TrialRecord], tools: ArenaTools) -> Config:
        return self._config(self.search.propose())

    async def judge(self, record: TrialRecord, tools: ArenaTools) -> bool:
        """Keep the trial's configuration if the ranker prefers its signature to the incumbent's by ``delta``.

        Without a signature it keeps the incumbent; the first window it sees (a change, when the host
        did not start at the defaults) becomes the incumbent. A failed ``rank_configs`` call keeps the
        incumbent and says so in ``rules``.
        """
        config, where = record.config, f"trial {record.index} ({self._short(record.config)})"
        if record.signature is None:
            self.search.mark_tried(config)
            self.rules.append(f"{where}: no signature ({record.signature_error}): kept the incumbent")
            return False
        if self.search.baseline(config, record.signature):
            self.rules.append(f"{where}: first window, taken as the incumbent")
            return True
        incumbent_sig = self.search.incumbent_signature
        assert incumbent_sig is not None  # baseline() returned False, so there is one
        args = {
            "candidates": [
                {"label": "incumbent", "config": dict(self.search.incumbent), "signature": dict(incumbent_sig)},
                {"label": "challenger", "config": dict(config), "signature": record.signature},
            ],
            "incumbent": 0,
            "delta": self.search.delta,
            "roles": self.roles,
        }
        try:
            result = await tools.call("rank_configs", args)
        except ArenaToolError as e:
            self.search.mark_tried(config)
            self.rules.append(f"{where}: rank_configs failed ({e.code}): kept the incumbent")
            return False
        margin = float(next(c["margin_vs_incumbent"] for c in result["order"] if c["label"] == "challenger"))
        promoted = not result["keep_incumbent"]
        decision = self.search.settle(config, record.signature, margin, str(result["archetype"]), promoted)
        self.rules.append(
            f"{where}: margin {decision.margin:+.3f} vs delta {self.search.delta:g} ({decision.archetype}): "
            + ("promoted" if promoted else "kept the incumbent")
        )
        return promoted

    def phase_changed(self) -> None:
        """The scenario's change happened: compare from a fresh window of the incumbent, not a stale one."""
        self.search.rebase()
        self.rules.append("the workload changed: re-measuring the incumbent")

    def observe(self, config: Config, record: TrialRecord) -> None:
        if record.decided_by is not None or record.signature is None:
            return  # judged already, or nothing to learn from
        if not self.search.baseline(config, record.signature):
            self.rules.append(f"trial {record.index}: an unjudged window of a non-incumbent, ignored")


def all_strategies() -> list[Strategy]:
    return [
        Default(),
        RandomSearch(),
        OptunaTPE(),
        OptunaGP(),
        ExpertAgentStrategy(),
        LLMAgentStrategy(),
        RankerArenaStrategy(),
    ]


def available(names: Sequence[str] | None = None) -> list[Strategy]:
    """The named strategies (all when ``None``); unavailability is found out at ``reset``."""
    every = all_strategies()
    return [s for s in every if names is None or s.name in names]


__all__ = [
    "Default",
    "ExpertAgentStrategy",
    "LLMAgentStrategy",
    "OptunaGP",
    "OptunaTPE",
    "RandomSearch",
    "RankerArenaStrategy",
    "Strategy",
    "StrategyUnavailable",
    "all_strategies",
    "available",
    "ranker_space",
]
