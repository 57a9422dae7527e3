"""`RankerModel`: archetypes, gating, pairwise rankers and the margin rule ("Set It and Forget It").

Offline (`RankerModel.train`):
1. Each window's signature becomes a vector (`features.vector`); its embedding is PCA over the
   standardised signed-log vector (missing metrics imputed with the training mean).
2. Archetypes: k-means on the embedding (k chosen by silhouette among ``ks`` unless given).
   Each archetype keeps its centroid and a shrunk (Ledoit-Wolf) covariance; its novelty
   threshold is the larger of the 99th percentile of its members' Mahalanobis distances and
   the chi-square 99% radius for the embedding's dimension.
3. Rankers: a global `HistGradientBoostingClassifier` on every training pair, and one per
   archetype on the pairs whose windows both belong to it (when there are enough of both
   labels; otherwise that archetype uses the global ranker and says so).

Online: the pair (or candidate set) is gated by the mean of its embeddings: the nearest
archetype by Mahalanobis distance, unless that distance exceeds its threshold, in which case
the answer comes from the global ranker and is labelled ``"novel: global fallback"``.
P(a better than b) is symmetrised (``(p(a,b) + 1 - p(b,a)) / 2``) and the margin is
``2 P - 1`` in [-1, 1]. The margin rule (`decide`): move from the incumbent to a challenger
only if the margin is at least ``delta``; otherwise keep the incumbent.

Files (`save`/`load`): a directory with ``manifest.json`` (``format``, ``format_version``,
feature names, library versions, the training data's sha256, archetypes, thresholds,
``delta``, cgroup roles) and ``estimators.joblib`` (the fitted scikit-learn objects, whose
sha256 the manifest records). Joblib files are pickles: loading one runs code from it, so
load only models you built or trust; the hash check catches corruption, not a malicious
author who also rewrites the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from scipy.stats import chi2
from sklearn.cluster import KMeans
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from lumos_mcp.ranker.dataset import Pair, WindowRecord, data_hash, pairs
from lumos_mcp.ranker.features import (
    DEFAULT_ROLES,
    FloatArray,
    feature_names,
    matrix,
    pair_feature_names,
    pair_features,
    signed_log,
)
from lumos_mcp.ranker.rules import DEFAULT_DELTA, GLOBAL, NOVEL, RankerModelError, decide

MODEL_FORMAT = "lumos-ranker-model"
FORMAT_VERSION = 1
__all__ = ["DEFAULT_DELTA", "GLOBAL", "NOVEL", "RankerModel", "RankerModelError", "TrainParams", "decide"]
MANIFEST = "manifest.json"
ESTIMATORS = "estimators.joblib"


@dataclass(frozen=True)
class TrainParams:
    n_components: int = 4
    ks: tuple[int, ...] = (2, 3, 4, 5)
    k: int | None = None
    max_iter: int = 150
    learning_rate: float = 0.08
    max_leaf_nodes: int = 15
    min_pair_gap: float = 0.05
    min_archetype_pairs: int = 200
    novelty_quantile: float = 0.99
    with_cgroups: bool = True
    random_state: int = 0


@dataclass(frozen=True)
class Archetype:
    id: int
    size: int
    threshold: float
    has_ranker: bool
    composition: dict[str, int]
    """Training windows per ``workload/antagonist`` label (what the archetype turned out to be)."""


@dataclass(frozen=True)
class Gate:
    """Which ranker answers: an archetype's, or the global one (``novel`` says why)."""

    archetype: int | None
    distance: float
    threshold: float | None
    novel: bool
    ranker: str

    @property
    def label(self) -> str:
        if self.novel:
            return NOVEL
        return f"archetype {self.archetype}" + ("" if self.ranker != GLOBAL else " (global ranker: too few pairs)")


@dataclass(frozen=True)
class Ranking:
    """Candidates best first; ``margins[i]`` is candidate ``order[i]``'s margin over the incumbent."""

    order: list[int]
    scores: list[float]
    margins: list[float]
    gate: Gate
    incumbent: int
    choice: int
    delta: float


@dataclass
class RankerModel:
    names: list[str]
    roles: dict[str, str]
    imputer: SimpleImputer
    scaler: StandardScaler
    pca: PCA
    centroids: FloatArray
    precisions: list[FloatArray]
    archetypes: list[Archetype]
    spread: FloatArray
    cols: list[int]
    """Feature columns the rankers use: those with at least two distinct values in training."""
    rankers: dict[str, HistGradientBoostingClassifier]
    delta: float = DEFAULT_DELTA
    manifest: dict[str, Any] = field(default_factory=dict)

    def with_roles(self, roles: Mapping[str, str]) -> RankerModel:
        """A shallow copy reading ``roles``' cgroups for those roles (the others keep their training
        names); the fitted estimators are shared, this model is unchanged."""
        return dataclasses.replace(self, roles={**self.roles, **roles})

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        records: Sequence[WindowRecord],
        params: TrainParams | None = None,
        roles: Mapping[str, str] | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> RankerModel:
        """Fit archetypes, thresholds and rankers on ``records``.

        Raises:
            RankerModelError: too few windows or no comparable pairs.
        """
        p = params or TrainParams()
        roles = dict(DEFAULT_ROLES if roles is None else roles)
        if len(records) < 10:
            raise RankerModelError("need at least 10 windows to train", windows=len(records))
        names = feature_names(p.with_cgroups)
        x = matrix([r.features for r in records], roles, p.with_cgroups)
        imputer = SimpleImputer(strategy="mean", keep_empty_features=True)
        scaler = StandardScaler()
        z = scaler.fit_transform(imputer.fit_transform(signed_log(x)))
        n_comp = max(1, min(p.n_components, z.shape[0] - 1, z.shape[1]))
        pca = PCA(n_components=n_comp, random_state=p.random_state)
        emb = pca.fit_transform(z)
        k, km = _choose_k(emb, p)
        assign = km.labels_
        spread = _spread(x)
        cols = [j for j in range(x.shape[1]) if len(np.unique(x[:, j][np.isfinite(x[:, j])])) >= 2]
        model = cls(
            names=names,
            roles=roles,
            imputer=imputer,
            scaler=scaler,
            pca=pca,
            centroids=km.cluster_centers_,
            precisions=[],
            archetypes=[],
            spread=spread,
            cols=cols,
            rankers={},
            delta=delta,
        )
        all_pairs = list(pairs(records, p.min_pair_gap))
        if not all_pairs:
            raise RankerModelError("no comparable pairs (every group has fewer than two distinct windows)")
        index = {id(r): i for i, r in enumerate(records)}
        model.rankers[GLOBAL] = model._fit_ranker(all_pairs, x, index, p)
        radius = math.sqrt(chi2.ppf(p.novelty_quantile, df=n_comp))
        for a in range(k):
            members = emb[assign == a]
            cov = (
                LedoitWolf().fit(members).covariance_
                if len(members) > n_comp
                else np.cov(emb.T).reshape(n_comp, n_comp)
            )
            precision = np.linalg.pinv(np.atleast_2d(cov))
            model.precisions.append(precision)
            d = _mahalanobis(members, km.cluster_centers_[a], precision)
            threshold = max(float(np.quantile(d, p.novelty_quantile)), radius) if len(d) else radius
            inside = [pr for pr in all_pairs if assign[index[id(pr.a)]] == a and assign[index[id(pr.b)]] == a]
            labels = {pr.label for pr in inside}
            has_ranker = len(inside) >= p.min_archetype_pairs and labels == {0, 1}
            if has_ranker:
                model.rankers[str(a)] = model._fit_ranker(inside, x, index, p)
            comp: dict[str, int] = {}
            for r, lab in zip(records, assign, strict=True):
                if lab == a:
                    key = f"{r.workload}/{'antagonist' if r.antagonist else 'solo'}"
                    comp[key] = comp.get(key, 0) + 1
            model.archetypes.append(Archetype(a, len(members), threshold, has_ranker, dict(sorted(comp.items()))))
        model.manifest = model._manifest(records, all_pairs, p)
        return model

    def _fit_ranker(
        self, prs: Sequence[Pair], x: FloatArray, index: Mapping[int, int], p: TrainParams
    ) -> HistGradientBoostingClassifier:
        ia = np.array([index[id(pr.a)] for pr in prs])
        ib = np.array([index[id(pr.b)] for pr in prs])
        y = np.array([pr.label for pr in prs])
        clf = HistGradientBoostingClassifier(
            max_iter=p.max_iter,
            learning_rate=p.learning_rate,
            max_leaf_nodes=p.max_leaf_nodes,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=p.random_state,
        )
        clf.fit(self._pairs(x[ia], x[ib]), y)
        return clf

    def _manifest(self, records: Sequence[WindowRecord], prs: Sequence[Pair], p: TrainParams) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "format_version": FORMAT_VERSION,
            "created_unix_s": round(time.time(), 3),
            "python": platform.python_version(),
            "sklearn_version": sklearn.__version__,
            "numpy_version": np.__version__,
            "feature_names": self.names,
            "pair_feature_names": pair_feature_names([self.names[j] for j in self.cols]),
            "used_features": [self.names[j] for j in self.cols],
            "roles": self.roles,
            "training_data": {
                "sha256": data_hash(records),
                "windows": len(records),
                "pairs": len(prs),
                "groups": sorted({f"{r.workload}/{'antagonist' if r.antagonist else 'solo'}" for r in records}),
            },
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(p).items()},
            "delta": self.delta,
            "pca_components": int(self.pca.n_components_),
            "archetypes": [vars(a) for a in self.archetypes],
            "rankers": sorted(self.rankers),
        }

    # ------------------------------------------------------------------ online
    def vectors(self, signatures: Sequence[Mapping[str, Any]]) -> FloatArray:
        """Feature rows for signatures (nested or flat)."""
        return matrix(signatures, self.roles, with_cgroups=len(self.names) > len(feature_names(False)))

    def embed(self, x: FloatArray) -> FloatArray:
        z = self.scaler.transform(self.imputer.transform(signed_log(x)))
        emb: FloatArray = self.pca.transform(z)
        return emb

    def gate(self, x: FloatArray) -> Gate:
        """The ranker for windows ``x`` (rows), by the mean of their embeddings."""
        centre = self.embed(x).mean(axis=0, keepdims=True)
        dists = [
            float(_mahalanobis(centre, c, prec)[0]) for c, prec in zip(self.centroids, self.precisions, strict=True)
        ]
        k = int(np.argmin(dists))
        arch = self.archetypes[k]
        if dists[k] > arch.threshold:
            return Gate(None, dists[k], arch.threshold, True, GLOBAL)
        return Gate(k, dists[k], arch.threshold, False, str(k) if arch.has_ranker else GLOBAL)

    def _pairs(self, a: FloatArray, b: FloatArray) -> FloatArray:
        return pair_features(a[:, self.cols], b[:, self.cols], self.spread[self.cols])

    def prob(self, a: FloatArray, b: FloatArray, ranker: str = GLOBAL) -> FloatArray:
        """P(row of ``a`` is better than the matching row of ``b``), symmetrised."""
        clf = self.rankers[ranker]
        p_ab = clf.predict_proba(self._pairs(a, b))[:, 1]
        p_ba = clf.predict_proba(self._pairs(b, a))[:, 1]
        out: FloatArray = (p_ab + 1.0 - p_ba) / 2.0
        return out

    def gate_pairs(self, a: FloatArray, b: FloatArray) -> list[Gate]:
        """`gate` for each pair of rows, vectorised."""
        centres = (self.embed(a) + self.embed(b)) / 2.0
        dists = np.column_stack(
            [_mahalanobis(centres, c, prec) for c, prec in zip(self.centroids, self.precisions, strict=True)]
        )
        out = []
        for row in dists:
            k = int(np.argmin(row))
            arch = self.archetypes[k]
            if row[k] > arch.threshold:
                out.append(Gate(None, float(row[k]), arch.threshold, True, GLOBAL))
            else:
                out.append(Gate(k, float(row[k]), arch.threshold, False, str(k) if arch.has_ranker else GLOBAL))
        return out

    def prob_pairs(self, a: FloatArray, b: FloatArray) -> tuple[FloatArray, list[Gate]]:
        """P(a better than b) per pair, each pair answered by the ranker its gate chooses."""
        gates = self.gate_pairs(a, b)
        out = np.empty(len(gates))
        for ranker in {g.ranker for g in gates}:
            idx = np.array([i for i, g in enumerate(gates) if g.ranker == ranker])
            out[idx] = self.prob(a[idx], b[idx], ranker)
        return out, gates

    def compare(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, Gate]:
        """Margin of window ``a`` over window ``b`` in [-1, 1] (positive: ``a`` looks better), and the gate."""
        x = self.vectors([a, b])
        gate = self.gate(x)
        return float(2.0 * self.prob(x[:1], x[1:], gate.ranker)[0] - 1.0), gate

    def rank(self, signatures: Sequence[Mapping[str, Any]], incumbent: int = 0, delta: float | None = None) -> Ranking:
        """Order candidates by their mean win probability against the others (Borda), with each one's
        margin over the incumbent and the margin rule's choice.

        Raises:
            RankerModelError: fewer than two candidates or a bad incumbent index.
        """
        n = len(signatures)
        if n < 2:
            raise RankerModelError("ranking needs at least two candidates", candidates=n)
        if not 0 <= incumbent < n:
            raise RankerModelError("incumbent is not a candidate index", incumbent=incumbent, candidates=n)
        d = self.delta if delta is None else delta
        x = self.vectors(signatures)
        gate = self.gate(x)
        ii, jj = np.array([(i, j) for i in range(n) for j in range(n) if i != j]).T
        prob = np.full((n, n), 0.5)
        prob[ii, jj] = self.prob(x[ii], x[jj], gate.ranker)
        scores = [float(np.mean(np.delete(prob[i], i))) for i in range(n)]
        order = sorted(range(n), key=lambda i: (-scores[i], i))
        margins = [0.0 if i == incumbent else float(2.0 * prob[i, incumbent] - 1.0) for i in order]
        best = order[0] if order[0] != incumbent else (order[1] if n > 1 else incumbent)
        choice = decide(float(2.0 * prob[best, incumbent] - 1.0), d, best, incumbent)
        return Ranking(order, [scores[i] for i in order], margins, gate, incumbent, choice, d)

    # ------------------------------------------------------------------ files
    def save(self, path: Path) -> Path:
        """Write ``path/manifest.json`` and ``path/estimators.joblib``; returns ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        blob = path / ESTIMATORS
        state = {
            "imputer": self.imputer,
            "scaler": self.scaler,
            "pca": self.pca,
            "centroids": self.centroids,
            "precisions": self.precisions,
            "spread": self.spread,
            "rankers": self.rankers,
        }
        joblib.dump(state, blob, compress=3)
        manifest = {**self.manifest, "delta": self.delta, "estimators_sha256": _sha256(blob)}
        manifest["archetypes"] = [vars(a) for a in self.archetypes]
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        self.manifest = manifest
        return path

    @classmethod
    def load(cls, path: Path) -> RankerModel:
        """Load a model directory written by `save`. Only load models you trust (joblib is pickle).

        Raises:
            RankerModelError: missing files, another format or version, or a hash mismatch.
        """
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise RankerModelError(f"unreadable manifest: {e}", path=str(path)) from e
        if manifest.get("format") != MODEL_FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise RankerModelError(
                "not a ranker model this version reads",
                path=str(path),
                format=manifest.get("format"),
                format_version=manifest.get("format_version"),
                supported=FORMAT_VERSION,
            )
        blob = path / ESTIMATORS
        if not blob.is_file() or _sha256(blob) != manifest.get("estimators_sha256"):
            raise RankerModelError("estimators missing or their sha256 differs from the manifest", path=str(blob))
        with warnings.catch_warnings():
            # an older or newer scikit-learn warns on unpickling; say it in our own error instead
            warnings.simplefilter("error", category=sklearn.exceptions.InconsistentVersionWarning)
            try:
                state = joblib.load(blob)
            except sklearn.exceptions.InconsistentVersionWarning as e:
                raise RankerModelError(
                    "trained with another scikit-learn version: retrain",
                    trained_with=manifest.get("sklearn_version"),
                    running=sklearn.__version__,
                ) from e
        return cls(
            names=list(manifest["feature_names"]),
            roles=dict(manifest["roles"]),
            imputer=state["imputer"],
            scaler=state["scaler"],
            pca=state["pca"],
            centroids=state["centroids"],
            precisions=list(state["precisions"]),
            archetypes=[Archetype(**a) for a in manifest["archetypes"]],
            spread=state["spread"],
            cols=[manifest["feature_names"].index(n) for n in manifest["used_features"]],
            rankers=dict(state["rankers"]),
            delta=float(manifest["delta"]),
            manifest=manifest,
        )


def _mahalanobis(points: FloatArray, centre: FloatArray, precision: FloatArray) -> FloatArray:
    diff = np.atleast_2d(points) - centre
    d2 = np.einsum("ij,jk,ik->i", diff, precision, diff)
    out: FloatArray = np.sqrt(np.maximum(d2, 0.0))
    return out


def _choose_k(emb: FloatArray, p: TrainParams) -> tuple[int, KMeans]:
    candidates = [p.k] if p.k is not None else [k for k in p.ks if 2 <= k < len(emb)]
    best: tuple[float, int, KMeans] | None = None
    for k in candidates:
        km = KMeans(n_clusters=k, n_init=10, random_state=p.random_state).fit(emb)
        score = silhouette_score(emb, km.labels_) if len(set(km.labels_)) > 1 else -1.0
        if best is None or score > best[0]:
            best = (float(score), k, km)
    if best is None:
        raise RankerModelError("no valid number of archetypes", windows=len(emb))
    return best[1], best[2]


def _spread(x: FloatArray) -> FloatArray:
    """Each column's standard deviation over its finite values; 1 where it has none or no spread."""
    out = np.ones(x.shape[1])
    for j in range(x.shape[1]):
        col = x[:, j][np.isfinite(x[:, j])]
        if len(col) >= 2 and float(np.std(col)) > 0:
            out[j] = float(np.std(col))
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
