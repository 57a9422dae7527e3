from __future__ import annotations

import math

import numpy as np
import pytest

from lumos_mcp.arena.stats import (
    TailStats,
    median_of_repeats,
    parse_pgbench_log,
    parse_pgbench_tps,
    tail_stats,
    throughput_floor_ok,
)


def test_tail_of_one_to_hundred_is_nearest_rank_by_hand() -> None:
    s = tail_stats(np.arange(1, 101, dtype=float), slo_us=90)
    assert (s.p50_us, s.p95_us, s.p99_us, s.p999_us) == (50, 95, 99, 100)
    assert s.mean_us == 50.5
    assert s.max_us == 100
    assert s.frac_over_slo == pytest.approx(0.10)
    assert s.count == 100
    assert s.timed_out == 0


def test_order_of_samples_does_not_matter() -> None:
    shuffled = np.random.default_rng(1).permutation(np.arange(1, 101, dtype=float))
    assert tail_stats(shuffled, 90) == tail_stats(np.arange(1, 101, dtype=float), 90)


def test_timed_out_requests_are_infinitely_slow_in_the_tail_but_not_in_the_mean() -> None:
    s = tail_stats(np.arange(1, 101, dtype=float), slo_us=90, timed_out=1)
    assert s.p50_us == 51  # rank ceil(0.5 * 101) = 51
    assert s.p99_us == 100  # rank ceil(0.99 * 101) = 100
    assert math.isinf(s.p999_us)  # rank 101 is the timed-out one
    assert s.frac_over_slo == pytest.approx(11 / 101)
    assert s.mean_us == 50.5


def test_a_small_known_latency_log() -> None:
    s = tail_stats([120.0, 80.0, 5000.0, 100.0], slo_us=1000)
    assert (s.p50_us, s.p95_us, s.p99_us, s.max_us) == (100, 5000, 5000, 5000)
    assert s.frac_over_slo == 0.25


def test_everything_timed_out_still_gives_a_tail() -> None:
    s = tail_stats([], slo_us=1000, timed_out=3)
    assert math.isinf(s.p50_us) and s.frac_over_slo == 1.0 and math.isnan(s.mean_us)


@pytest.mark.parametrize(("lat", "timed_out"), [([], 0), ([-1.0], 0), ([float("nan")], 0), ([1.0], -1)])
def test_impossible_samples_are_refused(lat: list[float], timed_out: int) -> None:
    with pytest.raises(ValueError):
        tail_stats(lat, 1000, timed_out=timed_out)


def test_median_of_repeats_is_field_wise_with_counts_summed() -> None:
    runs = [tail_stats([v, 2 * v], 150, throughput=t) for v, t in [(100.0, 10.0), (300.0, 30.0), (200.0, 20.0)]]
    m = median_of_repeats(runs)
    assert m.p50_us == 200 and m.max_us == 400 and m.throughput == 20
    assert m.count == 6
    assert m.frac_over_slo == 1.0  # 0.5, 1.0, 1.0


def test_median_of_repeats_refuses_nothing_and_mixed_slos() -> None:
    with pytest.raises(ValueError):
        median_of_repeats([])
    with pytest.raises(ValueError):
        median_of_repeats([tail_stats([1.0], 10), tail_stats([1.0], 20)])


def test_tail_stats_is_plain_data() -> None:
    d = tail_stats([1.0], 10).as_dict()
    assert d["p99_us"] == 1.0
    assert TailStats(**d) == tail_stats([1.0], 10)


@pytest.mark.parametrize(
    ("measured", "baseline", "floor", "ok"),
    [(8900, 8900, 0.9, True), (8010, 8900, 0.9, True), (8009, 8900, 0.9, False), (0, 10, 1.0, False)],
)
def test_throughput_floor_keeps_the_fraction_of_baseline(
    measured: float, baseline: float, floor: float, ok: bool
) -> None:
    assert throughput_floor_ok(measured, baseline, floor) is ok


def test_nan_throughput_fails_the_floor() -> None:
    assert throughput_floor_ok(float("nan"), 10, 0.5) is False


@pytest.mark.parametrize(("baseline", "floor"), [(0, 0.9), (-1, 0.9), (10, 0), (10, 1.5), (float("nan"), 0.5)])
def test_throughput_floor_refuses_meaningless_references(baseline: float, floor: float) -> None:
    with pytest.raises(ValueError):
        throughput_floor_ok(5, baseline, floor)


RATE_LOG = """\
0 0 1500 0 1700000000 100000 200
1 0 2500 0 1700000000 500000 1000
0 1 skipped 0 1700000001 0 5000
2 0 failed 0 1700000001 250000 0

"""


def test_pgbench_rate_log_keeps_time_as_latency_from_the_scheduled_start() -> None:
    log = parse_pgbench_log(RATE_LOG, rate_limited=True)
    # pgbench's time already runs from the scheduled start: the lag is not added again
    assert log.latencies_us.tolist() == [1500, 2500]
    assert log.lags_us.tolist() == [200, 1000]
    assert (log.skipped, log.failed) == (1, 1)
    assert log.first_end_s == pytest.approx(1700000000.1)
    assert log.last_end_s == pytest.approx(1700000000.5)


def test_pgbench_closed_loop_log_has_no_lag_column() -> None:
    log = parse_pgbench_log("0 199 2241 0 1175850568 995598\n3 5 900 0 1175850569 1\n", rate_limited=False)
    assert log.latencies_us.tolist() == [2241, 900]
    assert log.lags_us.tolist() == [0, 0]
    s = tail_stats(log.latencies_us, 1000)
    assert (s.p50_us, s.max_us, s.frac_over_slo) == (900, 2241, 0.5)


@pytest.mark.parametrize("text", ["0 1 1500 0 1700000000\n", "0 1 fast 0 1 2\n", "0 1 100 0 1 2\n"])
def test_malformed_pgbench_lines_name_the_line(text: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_pgbench_log(text, rate_limited="100 0 1 2" in text)


def test_pgbench_tps_comes_from_the_summary() -> None:
    out = (
        "latency average = 1.2 ms\ninitial connection time = 5.1 ms\ntps = 1099.816 (without initial connection time)\n"
    )
    assert parse_pgbench_tps(out) == pytest.approx(1099.816)
    with pytest.raises(ValueError):
        parse_pgbench_tps("pgbench: error: connection failed\n")
