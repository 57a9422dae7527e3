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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lumos_mcp.agents import expert, llm
from lumos_mcp.arena.problems import Config, KnobRange, Problem, Value, log_uniform
from lumos_mcp.arena.ranker_lab.strategy import RankerStrategy
from lumos_mcp.arena.runner import ArenaToolError, ArenaTools, TrialRecord
from lumos_mcp.compare import Comparison, Statistic, compare

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


RATE_SHIFT = 0.25
"""A change of the victim's request rate by more than this fraction (vs the incumbent's) is a shift."""
FLOOR_MARGIN = 0.05
"""The expert aims its steps at the floor plus this fraction, not at the floor itself."""
MAX_STEP = math.log(4.0)
"""The largest weight step (fourfold), in log units: the rule of thumb when nothing says otherwise."""
MIN_STEP = math.log(1.1)
"""A step smaller than 10% is not worth a trial: the knob is done."""


@dataclass
class _Seen:
    """One measured configuration: its samples for the keep rule and the scalars the step rules read."""

    config: Config
    samples: list[float]
    eps: float
    rate: float
    feasible: bool


@dataclass(frozen=True)
class _Move:
    """A trial that moved one knob from ``start`` (batch throughput ``start_eps``) to ``end`` (``end_eps``)."""

    knob: str
    start: int
    start_eps: float
    end: int
    end_eps: float


class ExpertAgentStrategy:
    """The built-in expert agent's rules over the MCP tools, with a statistical keep rule and step
    sizes the measurements allow.

    Every proposal starts from ``list_tunables`` (current values and the policy's bounds) and
    ``read_telemetry`` (the host signature), both through MCP, and `lumos_mcp.agents.expert.propose`'s
    rules pick the knob: under CPU pressure (PSI) lower a cgroup's CPU weight (``cpu.shares``) of a
    group other than the latency-sensitive one. What this strategy adds, each rule from evidence:

    - **Keep rule** (`judge`): `lumos_mcp.compare.compare` of the trial's per-sub-window objective
      (`Measurement.sub_frac_over_slo`, about 12 per 3 s window) against the incumbent's (pooled over
      its re-measurements). Commit only on "better"; revert on "worse" and on a floor break. On
      "no evidence" it reverts; if the move looked better (its mean went down) the next trial
      measures it once more and judges the pooled samples, so a real gain hidden by one short
      window gets a second chance; a second "no evidence" sets the knob aside.
    - **Step from the floor's headroom**: the first lowering is fourfold. Once a lowering has cost the
      batch job throughput, the next step is where the line through the last two measurements
      (throughput against log weight) reaches the floor plus `FLOOR_MARGIN`, at most fourfold, and
      halved when the last step used more than half the headroom. A step under 10% ends the knob.
    - **Never two floor breaks in a row**: after a break the next trial measures the defaults, which
      keep the floor by its definition (a fraction of their throughput) whatever else changed, and
      re-base the floor estimate; then the knob backs off: at most halfway (in log) from the last
      feasible value toward the broken one, where the line through both predicts the floor plus margin.
    - **A neighbour is not a batch job**: a group whose lowering did not reduce the victim's tail
      ("no evidence" or, confirmed by re-measuring the incumbent, "worse") is left alone; a group whose
      lowering raised the batch job's throughput is a neighbour competing with it (no floor limits
      its steps). Both are said in ``rules``.
    - **Rate shift**: a trial whose victim request rate differs from the incumbent's by more than
      `RATE_SHIFT` is not compared (reverted); so is a move that came out "worse". The incumbent is
      then measured again: if the re-measurement differs from its old samples (rate, or the keep
      rule's verdict), the regime shifted: the incumbent's samples, the floor estimate and the knobs
      set aside are re-based, and the search resumes. When no rule fires it holds (re-measures) the
      incumbent, which also notices a shift.
    """

    name = "expert"

    def reset(self, problem: Problem, seed: int) -> None:
        self.problem = problem
        self.rules: list[str] = []
        self.incumbent: _Seen | None = None
        self.floor_eps = math.nan
        """The batch throughput the floor asks for, as this strategy estimates it."""
        self.done: set[str] = set()
        self.moves: dict[str, _Move] = {}
        """Each knob's last kept move (the step rule's slope)."""
        self.broken: dict[str, tuple[int, float]] = {}
        """Each knob's lowest value seen to break the floor, with its throughput."""
        self.next_kind = "measure"
        self.pending: tuple[str, _Move | None] = ("measure", None)
        self.verdict = ""
        self.neighbours: set[str] = set()
        self.suspect: str | None = None
        self.candidate: tuple[Config, list[float]] | None = None
        """A move that came out "no evidence" but looked better: tried once more, its samples pooled."""
        """A knob whose lowering came out worse: set aside unless re-measuring the incumbent shows a shift."""

    # ------------------------------------------------------------------ evidence
    def _samples(self, record: TrialRecord) -> list[float]:
        m = record.measurement
        subs = m.sub_frac_over_slo if self.problem.objective == "frac_over_slo" else m.sub_p99_us
        if subs:
            return list(subs)
        return [float(r[self.problem.objective]) for r in m.repeats] or [record.objective]

    def _compare(self, before: list[float], after: list[float]) -> Comparison:
        statistic: Statistic = "mean" if self.problem.objective == "frac_over_slo" else "median"
        return compare(before, after, lower_is_better=True, statistic=statistic, resamples=2000)

    def _shifted(self, record: TrialRecord) -> bool:
        inc = self.incumbent
        rate = record.measurement.victim_rate
        if inc is None or not (math.isfinite(rate) and math.isfinite(inc.rate) and inc.rate > 0):
            return False
        return abs(rate - inc.rate) > RATE_SHIFT * inc.rate

    def _seen(self, config: Config, record: TrialRecord) -> _Seen:
        m = record.measurement
        return _Seen(dict(config), self._samples(record), m.batch_eps, m.victim_rate, record.feasible)

    async def judge(self, record: TrialRecord, tools: ArenaTools) -> bool:
        """Commit only when `lumos_mcp.compare` says the trial is better than the incumbent and it kept the floor."""
        where = f"trial {record.index}"
        if not record.feasible:
            self.verdict = "floor"
            self.rules.append(f"{where}: broke the floor (batch {record.measurement.batch_eps:.0f} ev/s): reverted")
            return False
        if self.incumbent is None:
            self.verdict = "better"
            return True
        if self._shifted(record):
            self.verdict = "shift"
            self.rules.append(
                f"{where}: victim rate {record.measurement.victim_rate:.0f}/s vs the incumbent's "
                f"{self.incumbent.rate:.0f}/s: a shift, not comparable: reverted, the incumbent is measured again"
            )
            return False
        samples = self._samples(record)
        again = self.pending[0] == "again" and self.candidate is not None and self.candidate[0] == record.config
        if again and self.candidate is not None:
            samples = self.candidate[1] + samples
        c = self._compare(self.incumbent.samples, samples)
        self.verdict = c.verdict
        outcome = "committed" if c.verdict == "better" else "reverted"
        if c.verdict == "no evidence" and c.effect < 0 and not again:
            self.verdict = "maybe"
            self.candidate = (dict(record.config), samples)
            outcome += ", but it looked better: it is measured once more, the samples pooled"
        self.rules.append(
            f"{where}: {c.verdict} ({c.statistic} {c.before:.4f} -> {c.after:.4f}, change {c.effect:+.4f} "
            f"[{c.low:+.4f}, {c.high:+.4f}], {c.n_before} vs {c.n_after} samples): {outcome}"
        )
        return c.verdict == "better"

    # ------------------------------------------------------------------ proposals
    def _step(self, knob: str, current: int) -> int | None:
        """The next (lower) value of a weight knob, or None when the measurements say stop."""
        floor = self.floor_eps * (1 + FLOOR_MARGIN)
        inc = self.incumbent
        if knob in self.broken and inc is not None and math.isfinite(floor):
            bad, bad_eps = self.broken[knob]
            good_eps = inc.eps
            if not bad < current or not good_eps > floor:
                return None
            share = 0.5 if good_eps <= bad_eps else min(0.5, (good_eps - floor) / (good_eps - bad_eps))
            log_step = share * math.log(current / bad)
            why = f"back off: at most halfway from {current} toward {bad}, which broke the floor"
        else:
            log_step, why = MAX_STEP, "fourfold (no throughput cost measured yet)"
            move = self.moves.get(knob)
            if move is not None and move.end == current and move.end_eps < move.start_eps and math.isfinite(floor):
                used = math.log(move.start / move.end)
                slope = (move.start_eps - move.end_eps) / used
                room = move.end_eps - floor
                if room <= 0:
                    return None
                log_step = min(MAX_STEP, room / slope)
                why = (
                    "fourfold (the headroom the last move's slope predicts allows it)"
                    if log_step == MAX_STEP
                    else f"to where the last move's slope reaches the floor + {FLOOR_MARGIN:.0%}"
                )
                if move.start_eps - move.end_eps > 0.5 * (move.start_eps - self.floor_eps):
                    log_step = min(log_step, used / 2)
                    why += ", halved (the last move used most of the headroom)"
        if log_step < MIN_STEP:
            return None
        k = next(k for k in self.problem.knobs if k.knob_id == knob)
        new = int(k.clip(round(current / math.exp(log_step))))
        if new >= current:
            return None
        self.rules.append(f"{knob.rsplit('/', 1)[-1]}: {current} -> {new}, {why}")
        return new

    async def propose(self, history: Sequence[TrialRecord], tools: ArenaTools) -> Config:
        tunables = (await tools.call("list_tunables", {"only_allowed": True}))["tunables"]
        current: Config = {t["id"]: t["value"] for t in tunables if t["id"] in self.problem.knob_ids}
        config = {**self.problem.defaults(), **current}
        if not history or self.incumbent is None:
            self.pending = ("measure", None)
            return config  # first look: measure where the host is
        if self.next_kind == "defaults":
            self.pending = ("defaults", None)
            self.rules.append("after a floor break: measure the defaults (they keep the floor by definition)")
            return self.problem.defaults()
        if self.next_kind == "recheck":
            self.pending = ("recheck", None)
            return dict(self.incumbent.config)
        if self.next_kind == "again" and self.candidate is not None:
            self.pending = ("again", self.pending[1])
            return dict(self.candidate[0])
        # the agent's evidence, read as the real agent reads it: the host signature over MCP (its
        # rules fire on PSI and fault rates, so an empty signature would make it hold forever)
        telemetry = await tools.call(
            "read_telemetry", {"window_s": self.problem.window_s, "sections": ["psi", "memory"]}
        )
        signature = telemetry["signature"]
        mine = [t for t in tunables if t["id"] in self.problem.knob_ids]
        victim = frozenset({f"{self.problem.parent}/victim"})  # the arena says which group is latency-sensitive
        skip = set(self.done)
        while True:
            proposal = expert.propose(signature, mine, skip, victim)
            if proposal is None:
                self.pending = ("hold", None)
                self.rules.append("hold: no rule fires (the incumbent is measured again)")
                return config
            [(knob, value)] = proposal.changes.items()
            if knob.endswith((".cpu_shares", ".cpu_weight")) and isinstance(config[knob], int):
                start = int(config[knob])
                new = self._step(knob, start)
                if new is None:
                    self.done.add(knob)
                    skip.add(knob)
                    self.rules.append(f"{knob.rsplit('/', 1)[-1]}: done at {start} (no step the floor allows)")
                    continue
                value = new
            else:
                self.rules.append(f"{proposal.rule}: {proposal.changes}")
            inc_eps = self.incumbent.eps
            self.pending = ("move", _Move(knob, int(config[knob]), inc_eps, int(value), math.nan))
            return {**config, knob: value if isinstance(value, bool) else int(value)}

    # ------------------------------------------------------------------ learning from a trial
    def observe(self, config: Config, record: TrialRecord) -> None:
        kind, move = self.pending
        seen = self._seen(config, record)
        self.next_kind = ""
        if kind == "again":
            self.candidate = None
        if kind == "measure" or self.incumbent is None:
            self.incumbent = seen
            if config == self.problem.defaults() and math.isfinite(seen.eps):
                self.floor_eps = self.problem.floor_fraction * seen.eps
            return
        if not record.feasible:
            self.next_kind = "defaults"  # whatever broke it, the defaults keep the floor
            if move is not None and kind in ("move", "again"):
                self.broken[move.knob] = (move.end, seen.eps)
            if math.isfinite(seen.eps):
                self.floor_eps = max(self.floor_eps, seen.eps) if math.isfinite(self.floor_eps) else seen.eps
            return
        if kind == "defaults" and math.isfinite(seen.eps):
            self.floor_eps = self.problem.floor_fraction * seen.eps  # re-based in the current regime
            self.rules.append(f"floor re-based: {self.floor_eps:.0f} ev/s")
        if record.action == "commit":
            if move is not None:
                self.moves[move.knob] = _Move(move.knob, move.start, move.start_eps, move.end, seen.eps)
                if seen.eps > move.start_eps and move.knob not in self.neighbours:
                    self.neighbours.add(move.knob)
                    self.rules.append(
                        f"{move.knob.rsplit('/', 1)[-1]}: lowering it raised the batch job's throughput: "
                        "a neighbour competing with it, not the batch job"
                    )
            self.incumbent = seen
            return
        if record.action == "unchanged":  # the incumbent measured again (a hold, a re-check)
            self._remeasured(seen, record)
            return
        # reverted, and kept the floor
        if kind == "defaults":
            return  # measured for the floor's sake: the incumbent stays
        if self.verdict == "maybe":
            self.next_kind = "again"
            return
        if self.verdict in ("worse", "shift"):
            self.next_kind = "recheck"  # a worse move, or a shift: is it the move or the regime?
            self.suspect = move.knob if move is not None and self.verdict == "worse" else None
        elif move is not None:
            self.done.add(move.knob)
            self.rules.append(
                f"{move.knob.rsplit('/', 1)[-1]}: lowering it did not measurably reduce the victim's tail: "
                "set aside (nothing shows it competes with the victim)"
            )

    def _remeasured(self, seen: _Seen, record: TrialRecord) -> None:
        inc = self.incumbent
        assert inc is not None
        suspect, self.suspect = self.suspect, None
        c = self._compare(inc.samples, seen.samples)
        if self._shifted(record) or c.verdict != "no evidence":
            ratio = seen.eps / inc.eps if inc.eps > 0 and math.isfinite(seen.eps) else 1.0
            if math.isfinite(self.floor_eps):
                self.floor_eps *= ratio
            self.rules.append(
                f"shift: the incumbent measured again is {c.verdict} than before (rate {inc.rate:.0f} -> "
                f"{seen.rate:.0f}/s): re-based, search resumes"
            )
            self.incumbent = seen
            self.done.clear()  # set aside in the old regime; the floor breaks seen (`broken`) still count
            self.moves.clear()
            return
        inc.samples = (inc.samples + seen.samples)[-4 * max(1, len(seen.samples)) :]
        if suspect is not None:
            self.done.add(suspect)
            self.rules.append(
                f"{suspect.rsplit('/', 1)[-1]}: lowering it made the victim's tail worse (the incumbent did not "
                "change): not a batch job, left alone"
            )


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
