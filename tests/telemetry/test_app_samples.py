"""App metrics as samples: batches with ages, histograms (cumulative counters and their deltas),
Prometheus histogram scrapes, and two windows of a metric compared."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telemetry_helpers import FakeClock, recorded_tree

from lumos_mcp.errors import InvalidMetricError, InvalidWindowError, ScrapeError, UnknownMetricError
from lumos_mcp.telemetry import Telemetry, parse_prometheus_text
from lumos_mcp.telemetry import app as app_module
from lumos_mcp.telemetry.app import (
    AppMetrics,
    check_windows,
    compare_app_windows,
    prometheus_histograms,
    resolve_windows,
    windows_around,
)

LATENCY = """\
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="/api",le="0.005"} {a}
http_request_duration_seconds_bucket{handler="/api",le="0.01"} {b}
http_request_duration_seconds_bucket{handler="/api",le="0.1"} {c}
http_request_duration_seconds_bucket{handler="/api",le="+Inf"} {d}
http_request_duration_seconds_sum{handler="/api"} 1.5
http_request_duration_seconds_count{handler="/api"} {d}
# TYPE queue_wait_seconds histogram
queue_wait_seconds_bucket{le="1"} 4
queue_wait_seconds_bucket{le="2"} 6
queue_wait_seconds_sum 7
queue_wait_seconds_count 9
# TYPE up gauge
up 1
"""


def exposition(a: int, b: int, c: int, d: int) -> str:
    return LATENCY.replace("{a}", str(a)).replace("{b}", str(b)).replace("{c}", str(c)).replace("{d}", str(d))


def test_a_batch_is_stored_at_its_ages_and_a_window_returns_exactly_its_samples() -> None:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    assert app.report_samples("api.ms", [1.0, 2.0, 3.0, 4.0], "ms", ages_s=[30, 20, 10, 0]) == 4
    # (start, end]: the sample 30 s ago is on the open edge of a window starting there
    assert sorted(app.window_samples("api.ms", 970.0, 1000.0)) == [2.0, 3.0, 4.0]
    assert sorted(app.window_samples("api.ms", 969.0, 985.0)) == [1.0, 2.0]
    assert app.window_samples("never.reported", 0.0, 1000.0) == []


def test_single_values_batches_and_histograms_of_one_name_all_count_in_its_window() -> None:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    app.report("api.ms", 5.0, "ms")
    app.report_samples("api.ms", [6.0, 7.0], "ms")
    app.report_histogram("api.ms", [(10.0, 2), (math.inf, 2)], "ms", "this_interval")
    assert sorted(app.window_samples("api.ms", 999.0, 1000.0)) == [2.5, 5.0, 6.0, 7.0, 7.5]


def test_raw_samples_are_bounded_per_name_and_the_oldest_go_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "MAX_SAMPLES", 5)
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    app.report_samples("a", [1.0, 2.0, 3.0], "ms")
    clock.advance(1)
    app.report_samples("a", [4.0, 5.0, 6.0, 7.0], "ms")
    assert sorted(app.window_samples("a", 0.0, 2000.0)) == [3.0, 4.0, 5.0, 6.0, 7.0]


def test_reports_are_bounded_per_name_by_the_capacity() -> None:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock, capacity=3)
    for i in range(5):
        clock.advance(1)
        app.report_samples("a", [float(i)], "ms")
        app.report_histogram("h", [(1.0, 1)], "ms", "this_interval")
    assert sorted(app.window_samples("a", 0.0, 2000.0)) == [2.0, 3.0, 4.0]
    assert len(app.window_samples("h", 0.0, 2000.0)) == 3


def test_only_so_many_names_hold_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "MAX_SAMPLE_METRICS", 2)
    app = AppMetrics(FakeClock())
    app.report_samples("a", [1.0], "ms")
    app.report_histogram("b", [(1.0, 1)], "ms")
    app.report("c", 1.0, "ms")  # single values are not samples held in bulk
    with pytest.raises(InvalidMetricError) as info:
        app.report_samples("d", [1.0], "ms")
    assert info.value.fields["name"] == "d"
    app.report_samples("a", [2.0], "ms")  # a name that holds samples already may go on


@pytest.mark.parametrize(
    ("values", "ages", "field"),
    [
        ([], None, "values"),
        ([1.0] * (app_module.MAX_BATCH + 1), None, "values"),
        ([1.0, float("nan")], None, "values.1"),
        ([1.0, float("inf")], None, "values.1"),
        ([True], None, "values.0"),
        (["3"], None, "values.0"),
        ([1.0, 1e101], None, "values.1"),
        ([1.0, 2.0], [0.0], "ages_s"),
        ([1.0, 2.0], [0.0, -1.0], "ages_s.1"),
        ([1.0, 2.0], [3601.0, 0.0], "ages_s.0"),
        ([1.0], [float("nan")], "ages_s.0"),
    ],
)
def test_a_malformed_batch_is_refused_naming_the_field_and_stores_nothing(
    values: list[Any], ages: list[float] | None, field: str
) -> None:
    app = AppMetrics(FakeClock())
    with pytest.raises(InvalidMetricError) as info:
        app.report_samples("api.ms", values, "ms", ages)
    assert info.value.code == "invalid_metric" and info.value.fields["field"] == field
    assert app.names() == [] and app.window_samples("api.ms", 0.0, 2000.0) == []


def test_a_histogram_of_counters_records_the_deltas_between_reports_and_the_first_only_seeds() -> None:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    assert app.report_histogram("lat", [(1.0, 10), (2.0, 20), (math.inf, 20)], "ms") == 0
    assert app.window_samples("lat", 0.0, 2000.0) == []
    clock.advance(5)
    # in any order: 2 new observations <= 1, 2 in (1, 2], one above 2
    assert app.report_histogram("lat", [(math.inf, 25), (2.0, 24), (1.0, 12)], "ms") == 5
    assert app.window_samples("lat", 0.0, 2000.0) == [0.25, 0.75, 1.25, 1.75, 2.0]


def test_a_counter_reset_makes_the_new_counts_the_interval() -> None:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    app.report_histogram("lat", [(1.0, 100), (math.inf, 100)], "ms")
    clock.advance(5)
    assert app.report_histogram("lat", [(1.0, 2), (math.inf, 3)], "ms") == 3  # the exporter restarted
    assert app.window_samples("lat", 1001.0, 1005.0) == [0.25, 0.75, 1.0]


def test_a_histogram_whose_buckets_change_starts_again_from_its_new_counts() -> None:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    app.report_histogram("lat", [(1.0, 1), (math.inf, 1)], "ms")
    clock.advance(1)
    assert app.report_histogram("lat", [(5.0, 3), (math.inf, 3)], "ms") == 0
    clock.advance(1)
    assert app.report_histogram("lat", [(5.0, 4), (math.inf, 4)], "ms") == 1


def test_interval_histograms_are_summed_over_a_window() -> None:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    app.report_histogram("lat", [(10.0, 1), (20.0, 1)], "ms", "this_interval")
    clock.advance(1)
    app.report_histogram("lat", [(10.0, 0), (20.0, 1)], "ms", "this_interval")
    assert app.window_samples("lat", 0.0, 2000.0) == [5.0, 15.0]


@pytest.mark.parametrize(
    ("buckets", "field"),
    [
        ([], "histogram"),
        ([(float(i), i) for i in range(app_module.MAX_BUCKETS + 1)], "histogram"),
        ([(1.0, 5), (2.0, 3)], "histogram"),
        ([(1.0, 1), (1.0, 2)], "histogram"),
        ([(math.inf, 1)], "histogram"),
        ([(float("nan"), 1)], "histogram.0.le"),
        ([(1.0, 1.5)], "histogram.0.count"),
        ([(1.0, -1)], "histogram.0.count"),
        ([(1.0, 2**60)], "histogram.0.count"),
        ([("1", 1)], "histogram.0.le"),
    ],
)
def test_a_malformed_histogram_is_refused_naming_the_field(buckets: list[Any], field: str) -> None:
    app = AppMetrics(FakeClock())
    with pytest.raises(InvalidMetricError) as info:
        app.report_histogram("lat", buckets, "ms", "this_interval")
    assert info.value.fields["field"] == field and app.names() == []


def test_the_summary_counts_batches_and_histograms_and_gives_a_histograms_last_interval_median() -> None:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    app.report_samples("batch", [1.0, 2.0, 9.0], "ms", ages_s=[2, 1, 0])
    app.report_histogram("hist", [(10.0, 4), (math.inf, 4)], "ms", "this_interval")
    summaries, missing = app.summaries(since=990.0, now=1000.0)
    by_name = {s["name"]: s for s in summaries}
    assert (by_name["batch"]["count"], by_name["batch"]["last"], by_name["batch"]["mean"]) == (3, 9.0, 4.0)
    assert (by_name["hist"]["count"], by_name["hist"]["last"], by_name["hist"]["last_age_s"]) == (4, 5.0, 0.0)
    assert missing == {}


def test_prometheus_histograms_come_per_label_set_with_inf_from_count_when_missing() -> None:
    found = prometheus_histograms(parse_prometheus_text(exposition(1, 3, 7, 8)))
    api, queue = found
    assert (api.name, dict(api.labels), api.sum, api.count) == (
        "http_request_duration_seconds",
        {"handler": "/api"},
        1.5,
        8,
    )
    assert api.buckets == ((0.005, 1), (0.01, 3), (0.1, 7), (math.inf, 8))
    assert queue.buckets == ((1.0, 4), (2.0, 6), (math.inf, 9))  # no +Inf line: _count stands for it


def test_a_bucket_without_a_numeric_le_is_a_scrape_error() -> None:
    text = '# TYPE h histogram\nh_bucket{le="fast"} 3\n'
    with pytest.raises(ScrapeError) as info:
        prometheus_histograms(parse_prometheus_text(text))
    assert info.value.code == "scrape_failed"


def test_successive_scrapes_turn_histogram_buckets_into_per_interval_samples_across_a_reset(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    t = Telemetry(recorded_tree(tmp_path, "6.18").root, clock=clock)
    first = t.record_prometheus(parse_prometheus_text(exposition(1, 3, 7, 8)))
    name = "prom.http_request_duration_seconds._api"
    assert name not in first and "prom.up" in first  # the first scrape only seeds a histogram
    clock.advance(10)
    second = t.record_prometheus(parse_prometheus_text(exposition(3, 5, 9, 11)))
    assert name in second
    # 2 new in (0, 0.005], none in (0.005, 0.01], none in (0.01, 0.1], one above 0.1 (at 0.1)
    assert t.app.window_samples(name, 1005.0, 1010.0) == pytest.approx([0.00125, 0.00375, 0.1])
    clock.advance(10)
    t.record_prometheus(parse_prometheus_text(exposition(0, 1, 1, 1)))  # the service restarted
    assert t.app.window_samples(name, 1015.0, 1020.0) == pytest.approx([0.0075])
    assert t.app.unit_of(name) == "value"


def _app_with(before: list[float], after: list[float]) -> AppMetrics:
    clock = FakeClock(1000.0)
    app = AppMetrics(clock)
    app.report_samples("lat", before, "ms", ages_s=[90.0] * len(before))
    app.report_samples("lat", after, "ms", ages_s=[30.0] * len(after))
    return app


@pytest.mark.parametrize(
    ("after", "lower_is_better", "verdict"),
    [
        ([float(x) for x in range(0, 20)], True, "better"),
        ([float(x) for x in range(20, 40)], True, "worse"),
        ([float(x) for x in range(20, 40)], False, "better"),
        ([float(x) for x in range(10, 30)], True, "no evidence"),
        ([12.0, 13.0], True, "no evidence"),
    ],
)
def test_two_windows_of_a_metric_compare_as_better_worse_or_no_evidence(
    after: list[float], lower_is_better: bool, verdict: str
) -> None:
    app = _app_with([float(x) for x in range(10, 30)], after)
    found = compare_app_windows(app, "lat", (120.0, 60.0), (60.0, 0.0), lower_is_better=lower_is_better)
    assert found.comparison.verdict == verdict and found.unit == "ms"
    assert (found.comparison.n_before, found.comparison.n_after) == (20, len(after))


def test_a_window_larger_than_the_comparison_takes_is_thinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "MAX_COMPARED", 50)
    app = _app_with([float(x % 7) for x in range(200)], [float(x % 5) for x in range(80)])
    found = compare_app_windows(app, "lat", (120.0, 60.0), (60.0, 0.0))
    assert (found.comparison.n_before, found.comparison.n_after) == (50, 50)


def test_comparing_an_unknown_metric_names_the_known_ones() -> None:
    app = _app_with([1.0], [2.0])
    with pytest.raises(UnknownMetricError) as info:
        compare_app_windows(app, "nope", (120.0, 60.0), (60.0, 0.0))
    assert info.value.code == "unknown_metric" and info.value.fields["known"] == ["lat"]


@pytest.mark.parametrize(
    ("before", "after", "window"),
    [
        ((60.0, 120.0), (30.0, 0.0), "before"),
        ((120.0, 60.0), (60.0, 60.0), "after"),
        ((4000.0, 60.0), (60.0, 0.0), "before"),
        ((120.0, 60.0), (90.0, 0.0), "after"),
        ((120.0, -1.0), (0.0, 0.0), "before"),
        ((float("nan"), 1.0), (1.0, 0.0), "before"),
    ],
)
def test_windows_out_of_order_or_overlapping_are_invalid(
    before: tuple[float, float], after: tuple[float, float], window: str
) -> None:
    with pytest.raises(InvalidWindowError) as info:
        check_windows(before, after)
    assert info.value.code == "invalid_window" and info.value.fields["window"] == window


def test_the_windows_around_a_change_are_as_long_as_the_time_since_its_apply() -> None:
    assert windows_around(100.0, 0.0) == ((200.0, 100.0), (100.0, 0.0))
    assert windows_around(100.0, 40.0) == ((160.0, 100.0), (100.0, 40.0))  # reverted 40 s ago
    assert windows_around(100.0, 0.0, window_s=30.0) == ((130.0, 100.0), (100.0, 70.0))
    assert windows_around(3000.0, 0.0) == ((3600.0, 3000.0), (3000.0, 0.0))  # cut to what is kept
    with pytest.raises(InvalidWindowError) as info:
        windows_around(3700.0, 0.0)
    assert info.value.fields["window"] == "txid"


def test_windows_come_from_the_caller_or_from_a_transaction_but_not_both() -> None:
    assert resolve_windows([120.0, 60.0], [60.0, 0.0]) == ((120.0, 60.0), (60.0, 0.0))
    assert resolve_windows(None, None, applied=(50.0, 0.0)) == ((100.0, 50.0), (50.0, 0.0))
    for before, after, applied, window in [
        ([120.0, 60.0], None, (50.0, 0.0), "txid"),
        (None, None, None, "before"),
        ([120.0, 60.0], None, None, "after"),
        ([60.0, 120.0], [30.0, 0.0], None, "before"),
    ]:
        with pytest.raises(InvalidWindowError) as info:
            resolve_windows(before, after, applied)
        assert info.value.fields["window"] == window


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(numbers, max_size=6),
    ages=st.one_of(st.none(), st.lists(numbers, max_size=6)),
    buckets=st.lists(st.tuples(numbers, numbers), max_size=6),
    counts=st.sampled_from(["since_start", "this_interval"]),
)
def test_any_batch_or_histogram_is_stored_or_refused_with_a_typed_error(
    values: list[Any], ages: list[Any] | None, buckets: list[Any], counts: Any
) -> None:
    app = AppMetrics(FakeClock())
    for report in (
        lambda: app.report_samples("m", values, "ms", ages),
        lambda: app.report_histogram("h", buckets, "ms", counts),
        lambda: app.report_histogram("h", buckets, "ms", counts),
    ):
        try:
            report()
        except InvalidMetricError as e:
            assert e.code == "invalid_metric" and "field" in e.fields
    for name in ("m", "h"):
        assert all(math.isfinite(v) for v in app.window_samples(name, 0.0, 2000.0))


@settings(max_examples=100, deadline=None)
@given(
    before=st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)),
    after=st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)),
)
def test_any_pair_of_windows_is_compared_or_refused_as_invalid_window(
    before: tuple[float, float], after: tuple[float, float]
) -> None:
    app = _app_with([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    try:
        found = compare_app_windows(app, "lat", before, after, resamples=100)
    except InvalidWindowError as e:
        assert e.fields["window"] in ("before", "after")
    else:
        assert found.comparison.verdict in ("better", "worse", "no evidence")
