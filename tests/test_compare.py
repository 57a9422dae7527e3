"""lumos_mcp.compare: better / worse / no evidence from two windows' samples, with the effect's interval."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumos_mcp.compare import MIN_SAMPLES, bootstrap_median, compare, expand_histogram, prob_beats


def _noisy(center: float, n: int, seed: int, spread: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(center, spread) for _ in range(n)]


def test_a_clear_drop_in_a_lower_is_better_metric_is_better() -> None:
    c = compare(_noisy(10, 200, 1), _noisy(8, 200, 2))
    assert c.verdict == "better"
    assert c.high < 0
    assert c.effect == pytest.approx(-2, abs=0.4)
    assert c.relative == pytest.approx(-0.2, abs=0.05)
    assert (c.n_before, c.n_after) == (200, 200)


def test_a_clear_rise_in_a_lower_is_better_metric_is_worse() -> None:
    c = compare(_noisy(10, 200, 1), _noisy(12, 200, 2))
    assert c.verdict == "worse"
    assert c.low > 0


def test_higher_is_better_flips_the_direction() -> None:
    c = compare(_noisy(10, 200, 1), _noisy(12, 200, 2), lower_is_better=False)
    assert c.verdict == "better"
    c = compare(_noisy(10, 200, 1), _noisy(8, 200, 2), lower_is_better=False)
    assert c.verdict == "worse"


def test_two_windows_of_the_same_distribution_give_no_evidence() -> None:
    c = compare(_noisy(10, 200, 1), _noisy(10, 200, 2))
    assert c.verdict == "no evidence"
    assert c.low < 0 < c.high


def test_a_real_but_small_effect_is_no_evidence_under_a_larger_minimum_effect() -> None:
    before, after = _noisy(10, 400, 1, 0.2), _noisy(9.8, 400, 2, 0.2)
    assert compare(before, after).verdict == "better"
    c = compare(before, after, min_effect=0.5)
    assert c.verdict == "no evidence"
    assert c.min_effect == 0.5


def test_fewer_than_the_minimum_samples_is_no_evidence_however_large_the_change() -> None:
    c = compare([10.0] * (MIN_SAMPLES - 1), [1.0] * 50)
    assert c.verdict == "no evidence"
    assert math.isnan(c.low) and math.isnan(c.high)
    assert c.n_before == MIN_SAMPLES - 1
    assert c.effect == pytest.approx(-9.0)


def test_non_finite_samples_are_dropped_before_counting() -> None:
    c = compare([1.0, 2.0, math.nan, math.inf], [1.0, 2.0, 3.0])
    assert c.n_before == 2
    assert c.verdict == "no evidence"


def test_the_tail_statistic_sees_a_change_the_median_does_not() -> None:
    before = [1.0] * 900 + [2.0] * 100
    after = [1.0] * 900 + [20.0] * 100  # same median, a far worse tail
    assert compare(before, after, statistic="median").verdict == "no evidence"
    tail = compare(before, after, statistic="p95")
    assert tail.verdict == "worse"
    assert tail.after == pytest.approx(20.0)


def test_the_same_seed_gives_the_same_interval() -> None:
    a, b = _noisy(10, 50, 1), _noisy(9, 50, 2)
    assert compare(a, b, seed=7) == compare(a, b, seed=7)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"statistic": "p50"}, "statistic"),
        ({"level": 1.0}, "level"),
        ({"min_effect": -1.0}, "min_effect"),
        ({"resamples": 10}, "resamples"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        compare([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], **kwargs)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    base=st.lists(st.floats(0, 100), min_size=MIN_SAMPLES, max_size=40),
    shift=st.floats(0.5, 50),
)
def test_shifting_every_sample_down_by_more_than_the_spread_is_always_better(base: list[float], shift: float) -> None:
    spread = max(base) - min(base)
    after = [v - spread - shift for v in base]
    c = compare(base, after, resamples=500)
    assert c.verdict == "better"
    assert compare(base, after, lower_is_better=False, resamples=500).verdict == "worse"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=MIN_SAMPLES, max_size=40))
def test_a_window_compared_with_itself_is_never_a_verdict(values: list[float]) -> None:
    assert compare(values, values, resamples=500).verdict == "no evidence"


def test_large_windows_are_resampled_in_bounded_chunks_with_the_same_answer_shape() -> None:
    before, after = _noisy(10, 50_000, 1), _noisy(10.1, 50_000, 2)
    c = compare(before, after, resamples=200, statistic="p99")
    assert c.n_before == 50_000
    assert c.low <= c.effect <= c.high


def test_bootstrap_median_and_prob_beats_keep_their_arena_meaning() -> None:
    iv = bootstrap_median([1.0, 2.0, 3.0, 4.0, 5.0])
    assert iv.median == 3.0
    assert 1.0 <= iv.low <= 3.0 <= iv.high <= 5.0
    assert iv.verdict() == "better"
    assert prob_beats([5.0, 6.0, 7.0], [1.0, 2.0, 3.0]) == 1.0
    assert math.isnan(prob_beats([], [1.0]))


def test_a_histogram_expands_to_values_inside_each_bucket() -> None:
    values = expand_histogram([(1.0, 2), (2.0, 5), (math.inf, 6)])
    assert len(values) == 6
    assert sorted(values) == values
    assert [v for v in values if v <= 1.0] == [0.25, 0.75]
    assert [v for v in values[:-1] if 1.0 < v <= 2.0] == pytest.approx([1 + 1 / 6, 1.5, 1 + 5 / 6])
    assert values[-1] == 2.0  # the +Inf bucket sits at the last finite bound


def test_a_large_histogram_is_scaled_down_keeping_its_shape() -> None:
    values = expand_histogram([(10.0, 900_000), (100.0, 1_000_000)], max_samples=1000)
    assert len(values) == 1000
    assert sum(v <= 10 for v in values) == 900


@pytest.mark.parametrize(
    "buckets",
    [
        [(1.0, 5), (2.0, 3)],  # counts decrease: not cumulative
        [(1.0, -1)],
        [(math.inf, 4)],  # no finite bound
        [(1.0, 1), (1.0, 2)],
    ],
)
def test_a_malformed_histogram_is_refused(buckets: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError, match="histogram"):
        expand_histogram(buckets)
