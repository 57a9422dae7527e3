"""Held-out evaluation of the ranker against single-counter proxies, on the same pairs.

Splits (the model never sees a test window while training):
- ``workload``: leave one workload out (train on the two others, test on its pairs);
- ``antagonist``: train without the antagonist, test with it (the paper's "stable -> noisy"),
  and the reverse;
- ``windows`` (reference, in distribution): k-fold over windows (4 by default), test pairs inside a fold.

Every number is a pairwise accuracy (ties in a proxy count half) and an AUC, over ordered
pairs of windows of one workload and antagonist setting whose true metrics differ by more
than 5%. A proxy's direction (is lower better?) is fitted on the training pairs, which is
generous to it. Proxies that this host cannot measure (IPC: no hardware counters; run-queue
delay: no schedstats) are reported as such.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from lumos_mcp.ranker.dataset import Pair, WindowRecord, pairs
from lumos_mcp.ranker.features import FloatArray, flat_signature
from lumos_mcp.ranker.model import GLOBAL, RankerModel, TrainParams

NOISE = "@noise_cpus"
"""Not a counter the ranker sees: the CPU used outside the arena during the window (how much of
the ranking a confound explains; other users of this shared machine ran beside the generator)."""

PROXIES: dict[str, str] = {
    "ctx switches/s": "sched.ctx_switches_per_s",
    "PSI cpu some": "psi.cpu.some.window_pct",
    "run delay": "sched.run_delay_ms_per_s",
    "IPC": "perf.ipc",
    "app cgroup CPU": "cgroups.lumos-arena/app.cpu_usage_cores",
    "outside noise (diagnostic)": NOISE,
}
MISSING_WHY = {
    "run delay": "no /proc/schedstat here (CONFIG_SCHEDSTATS off)",
    "IPC": "perf has software events only here (no cycles/instructions)",
}


@dataclass(frozen=True)
class Score:
    accuracy: float
    auc: float
    n: int

    def cell(self) -> str:
        if self.n == 0 or math.isnan(self.accuracy):
            return "n/a"
        auc = "n/a" if math.isnan(self.auc) else f"{self.auc:.2f}"
        return f"{100 * self.accuracy:.0f}% / {auc}"


def score(prob: FloatArray, labels: FloatArray) -> Score:
    """Accuracy (``prob`` > 0.5 means 'a is better'; exactly 0.5 counts half) and AUC."""
    ok = np.isfinite(prob)
    p, y = prob[ok], labels[ok]
    if len(p) == 0:
        return Score(math.nan, math.nan, 0)
    acc = float(np.mean(np.where(p == 0.5, 0.5, (p > 0.5) == (y == 1))))
    auc = float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 and len(set(p.tolist())) > 1 else math.nan
    return Score(acc, auc, len(p))


def _value(r: WindowRecord, metric: str) -> float:
    return r.noise_cpus if metric == NOISE else flat_signature(r.features).get(metric, math.nan)


def proxy_values(prs: Sequence[Pair], metric: str) -> tuple[FloatArray, FloatArray]:
    a = np.array([_value(p.a, metric) for p in prs])
    b = np.array([_value(p.b, metric) for p in prs])
    return a, b


def proxy_prob(prs: Sequence[Pair], metric: str, sign: float) -> FloatArray:
    """Pseudo-probability that ``a`` is better, from one counter: 1, 0 or 0.5 (tie); nan if missing."""
    a, b = proxy_values(prs, metric)
    d = sign * (a - b)
    out: FloatArray = np.where(np.isnan(d), np.nan, np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5)))
    return out


def proxy_graded(prs: Sequence[Pair], metric: str, sign: float) -> FloatArray:
    """A graded version for AUC: the signed log-ratio squashed into (0, 1)."""
    a, b = proxy_values(prs, metric)
    d = sign * (np.log1p(np.abs(a)) - np.log1p(np.abs(b)))
    out: FloatArray = 1.0 / (1.0 + np.exp(-d))
    return out


def fit_sign(prs: Sequence[Pair], metric: str) -> float:
    """+1 if a higher counter goes with the better window on the training pairs, else -1."""
    y = np.array([p.label for p in prs], dtype=float)
    g = proxy_graded(prs, metric, 1.0)
    s = score(g, y)
    return 1.0 if math.isnan(s.auc) or s.auc >= 0.5 else -1.0


@dataclass(frozen=True)
class Row:
    split: str
    test: str
    pairs: int
    ranker: Score
    global_only: Score
    host_only: Score
    gated_share: float
    novel_share: float
    proxies: dict[str, Score]


def _evaluate(
    split: str, test_name: str, train: Sequence[WindowRecord], test: Sequence[WindowRecord], params: TrainParams
) -> list[Row]:
    model = RankerModel.train(train, params)
    host_model = RankerModel.train(train, dataclasses.replace(params, with_cgroups=False))
    train_pairs = list(pairs(train, params.min_pair_gap))
    signs = {name: fit_sign(train_pairs, metric) for name, metric in PROXIES.items()}
    test_pairs = list(pairs(test, params.min_pair_gap))
    if not test_pairs:
        return []
    xa = model.vectors([p.a.features for p in test_pairs])
    xb = model.vectors([p.b.features for p in test_pairs])
    prob, gates = model.prob_pairs(xa, xb)
    glob = model.prob(xa, xb, GLOBAL)
    host, _ = host_model.prob_pairs(
        host_model.vectors([p.a.features for p in test_pairs]), host_model.vectors([p.b.features for p in test_pairs])
    )
    labels = np.array([p.label for p in test_pairs], dtype=float)
    rows = []
    groups = sorted({p.a.workload for p in test_pairs})
    subsets = [("all", np.ones(len(test_pairs), dtype=bool))]
    if len(groups) > 1:
        subsets += [(g, np.array([p.a.workload == g for p in test_pairs])) for g in groups]
    for name, mask in subsets:
        sub = [p for p, m in zip(test_pairs, mask, strict=True) if m]
        gsub = [g for g, m in zip(gates, mask, strict=True) if m]
        proxies = {}
        for pname, metric in PROXIES.items():
            hard = proxy_prob(sub, metric, signs[pname])
            graded = proxy_graded(sub, metric, signs[pname])
            hs, gs = score(hard, labels[mask]), score(graded, labels[mask])
            proxies[pname] = Score(hs.accuracy, gs.auc, hs.n)
        rows.append(
            Row(
                split=split,
                test=f"{test_name}" if name == "all" else f"{test_name}: {name}",
                pairs=int(mask.sum()),
                ranker=score(prob[mask], labels[mask]),
                global_only=score(glob[mask], labels[mask]),
                host_only=score(host[mask], labels[mask]),
                gated_share=float(np.mean([g.ranker != GLOBAL for g in gsub])),
                novel_share=float(np.mean([g.novel for g in gsub])),
                proxies=proxies,
            )
        )
    return rows


def evaluate(records: Sequence[WindowRecord], params: TrainParams | None = None, folds: int = 4) -> list[Row]:
    """Every split's rows (see the module docstring)."""
    p = params or TrainParams()
    rows: list[Row] = []
    workloads = sorted({r.workload for r in records})
    for w in workloads:
        train = [r for r in records if r.workload != w]
        test = [r for r in records if r.workload == w]
        rows += _evaluate("workload held out", w, train, test, p)
    for held in (True, False):
        train = [r for r in records if r.antagonist != held]
        test = [r for r in records if r.antagonist == held]
        name = "with antagonist (trained without)" if held else "without antagonist (trained with)"
        rows += _evaluate("antagonist held out", name, train, test, p)
    rng = np.random.default_rng(p.random_state)
    fold_of = rng.integers(0, folds, size=len(records))
    pooled: dict[str, list[Row]] = {}
    for f in range(folds):
        train = [r for r, k in zip(records, fold_of, strict=True) if k != f]
        test = [r for r, k in zip(records, fold_of, strict=True) if k == f]
        for row in _evaluate(f"in distribution ({folds}-fold)", "windows", train, test, p):
            pooled.setdefault(row.test, []).append(row)
    for name, rs in pooled.items():
        rows.append(_pool(rs, name))
    return rows


def _mean_score(scores: Sequence[Score]) -> Score:
    n = sum(s.n for s in scores)
    if n == 0:
        return Score(math.nan, math.nan, 0)
    acc = sum(s.accuracy * s.n for s in scores if s.n) / n
    aucs = [(s.auc, s.n) for s in scores if s.n and not math.isnan(s.auc)]
    auc = sum(a * k for a, k in aucs) / sum(k for _, k in aucs) if aucs else math.nan
    return Score(acc, auc, n)


def _pool(rows: Sequence[Row], name: str) -> Row:
    n = sum(r.pairs for r in rows)
    return Row(
        split=rows[0].split,
        test=name,
        pairs=n,
        ranker=_mean_score([r.ranker for r in rows]),
        global_only=_mean_score([r.global_only for r in rows]),
        host_only=_mean_score([r.host_only for r in rows]),
        gated_share=sum(r.gated_share * r.pairs for r in rows) / n,
        novel_share=sum(r.novel_share * r.pairs for r in rows) / n,
        proxies={k: _mean_score([r.proxies[k] for r in rows]) for k in rows[0].proxies},
    )


def markdown(rows: Sequence[Row]) -> str:
    """The rows as a markdown table (accuracy / AUC per cell)."""
    head = [
        "split",
        "test pairs",
        "n",
        "ranker (gated)",
        "global ranker",
        "ranker, host counters only",
        "archetype ranker used",
        "novel",
        *PROXIES,
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r.split,
            r.test,
            str(r.pairs),
            r.ranker.cell(),
            r.global_only.cell(),
            r.host_only.cell(),
            f"{100 * r.gated_share:.0f}%",
            f"{100 * r.novel_share:.0f}%",
        ]
        for name in PROXIES:
            s = r.proxies[name]
            cells.append(s.cell() if s.n else "n/a" + ("*" if name in MISSING_WHY else ""))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"*{name}: {why}." for name, why in MISSING_WHY.items()]
    return "\n".join(lines) + "\n\nCells: pairwise accuracy / AUC. " + " ".join(notes) + "\n"
