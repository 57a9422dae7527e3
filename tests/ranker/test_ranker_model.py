from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lumos_mcp.ranker.dataset import WindowRecord, load_records, pairs
from lumos_mcp.ranker.model import GLOBAL, NOVEL, RankerModel, RankerModelError, decide
from tests.ranker.ranker_helpers import SHIPPED, far_away, shipped_subset, tiny_model

Trained = tuple[RankerModel, list[WindowRecord]]


def test_the_shipped_dataset_has_three_workloads_with_and_without_the_antagonist() -> None:
    records = load_records(SHIPPED)
    groups = {r.group for r in records}
    assert {w for w, _ in groups} == {"probe", "batch", "vm"}
    assert {a for _, a in groups} == {True, False}
    assert all(r.metric.higher_is_better == (r.workload != "probe") for r in records)


def test_a_tiny_model_trains_on_the_shipped_data() -> None:
    model, records = tiny_model()
    assert len(model.archetypes) == 2
    assert sum(a.size for a in model.archetypes) == len(records)
    assert GLOBAL in model.rankers


def test_pairs_compare_only_windows_of_one_workload_and_antagonist_setting() -> None:
    for p in pairs(shipped_subset(6)):
        assert p.a.group == p.b.group
        assert p.label == int(p.a.metric.better_than(p.b.metric))


def test_a_far_away_signature_falls_back_to_the_global_ranker_as_novel(trained: Trained) -> None:
    model, records = trained
    margin, gate = model.compare(far_away(records[0].features), records[1].features)
    assert gate.novel and gate.ranker == GLOBAL and gate.label == NOVEL
    assert gate.threshold is not None and gate.distance > gate.threshold
    assert -1.0 <= margin <= 1.0


def test_a_training_window_is_gated_to_its_archetype(trained: Trained) -> None:
    model, records = trained
    x = model.vectors([r.features for r in records])
    emb = model.embed(x)
    nearest = int(np.argmin(np.linalg.norm(emb - model.centroids[0], axis=1)))
    gate = model.gate(x[nearest : nearest + 1])
    assert not gate.novel and gate.archetype is not None
    assert gate.label.startswith("archetype")


def test_the_margin_rule_keeps_the_incumbent_below_delta() -> None:
    assert decide(0.19, 0.2, challenger=1, incumbent=0) == 0
    assert decide(-0.5, 0.2, challenger=1, incumbent=0) == 0
    assert decide(0.2, 0.2, challenger=1, incumbent=0) == 1


def test_rank_keeps_the_incumbent_unless_the_best_margin_reaches_delta(trained: Trained) -> None:
    model, records = trained
    sigs = [r.features for r in records[:4]]
    strict = model.rank(sigs, incumbent=2, delta=1.0)
    assert strict.choice == 2
    lax = model.rank(sigs, incumbent=2, delta=-1.0)
    assert lax.choice != 2
    assert sorted(strict.order) == [0, 1, 2, 3]
    assert strict.margins[strict.order.index(2)] == 0.0


def test_probabilities_are_antisymmetric(trained: Trained) -> None:
    model, records = trained
    x = model.vectors([r.features for r in records[:6]])
    p_ab = model.prob(x[:3], x[3:])
    p_ba = model.prob(x[3:], x[:3])
    assert np.allclose(p_ab + p_ba, 1.0)


def test_save_and_load_round_trip_gives_the_same_answers(trained: Trained, tmp_path: Path) -> None:
    model, records = trained
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["format"] == "lumos-ranker-model" and manifest["format_version"] == 1
    assert manifest["training_data"]["windows"] == len(records)
    assert len(manifest["training_data"]["sha256"]) == 64
    loaded = RankerModel.load(tmp_path / "m")
    x = model.vectors([r.features for r in records[:8]])
    assert np.allclose(model.prob(x[:4], x[4:]), loaded.prob(x[:4], x[4:]))
    assert loaded.archetypes == model.archetypes


def test_loading_refuses_a_tampered_or_foreign_model(trained: Trained, tmp_path: Path) -> None:
    model, _ = trained
    path = model.save(tmp_path / "m")
    blob = path / "estimators.joblib"
    blob.write_bytes(blob.read_bytes() + b"x")
    with pytest.raises(RankerModelError):
        RankerModel.load(path)
    model.save(path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(RankerModelError) as e:
        RankerModel.load(path)
    assert e.value.fields["format_version"] == 99


def test_training_refuses_too_little_data() -> None:
    with pytest.raises(RankerModelError):
        RankerModel.train(shipped_subset(1))


def test_the_shipped_model_loads_and_ranks_shipped_windows() -> None:
    import sklearn

    from lumos_mcp.server.ranker import DEFAULT_MODEL

    manifest = json.loads((DEFAULT_MODEL / "manifest.json").read_text())
    if manifest["sklearn_version"] != sklearn.__version__:
        pytest.skip(f"shipped model pickled by scikit-learn {manifest['sklearn_version']}: retrain to use it")
    model = RankerModel.load(DEFAULT_MODEL)
    records = load_records(SHIPPED)
    assert manifest["training_data"]["windows"] <= len(records)
    ranking = model.rank([r.features for r in records[:3]])
    assert sorted(ranking.order) == [0, 1, 2]
