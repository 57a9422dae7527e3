from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from lumos_mcp.arena.probe import parse_address, run_client
from lumos_mcp.arena.workloads import ProbeWorkload


@pytest.fixture
def slow_server() -> Iterator[str]:
    """A probe server burning 5 ms per request (a slowed service)."""
    with ProbeWorkload(work_us=5000) as probe:
        yield probe.address


def test_addresses_are_unix_paths_or_loopback_tcp() -> None:
    assert parse_address("unix:/tmp/x.sock")[1] == "/tmp/x.sock"
    assert parse_address("tcp:127.0.0.1:80")[1] == ("127.0.0.1", 80)
    for bad in ["tcp:0.0.0.0:80", "tcp:10.0.0.1:5", "udp:1", "unix:", "/tmp/x"]:
        with pytest.raises(ValueError):
            parse_address(bad)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_every_request_is_answered_with_a_positive_latency_on_an_idle_server(transport: str) -> None:
    with ProbeWorkload(rate_hz=1000, work_us=20, transport=transport) as probe:  # type: ignore[arg-type]
        result = run_client(probe.address, rate_hz=1000, duration_s=0.3)
    assert result.scheduled == result.sent == result.received == 300
    assert result.timed_out == 0
    assert result.latencies_us.size == 300
    assert np.all(result.latencies_us > 0)


def test_lateness_from_the_schedule_counts_when_the_server_is_slow(slow_server: str) -> None:
    # 1 kHz against a 5 ms service with one request in flight: request i cannot finish before
    # (i + 1) * 5 ms, yet was due at i * 1 ms, so its latency is at least 5 ms + i * 4 ms.
    result = run_client(slow_server, rate_hz=1000, duration_s=0.05, max_outstanding=1, timeout_s=10)
    assert result.received == 50
    bound = 5000 + 4000 * np.arange(50)
    assert np.all(result.latencies_us >= bound * 0.999)
    assert result.late_sends >= 45


def test_requests_not_answered_in_time_are_timed_out_not_dropped(slow_server: str) -> None:
    result = run_client(slow_server, rate_hz=1000, duration_s=0.1, max_outstanding=4, timeout_s=0.03)
    assert result.scheduled == 100
    assert result.received + result.timed_out == 100
    assert result.timed_out > 50
    stats = result.stats(slo_us=1000)
    assert stats.timed_out == result.timed_out
    assert stats.frac_over_slo > 0.5


def test_each_answer_and_each_timeout_is_reported_with_its_scheduled_time(slow_server: str) -> None:
    seen: list[tuple[int, int, float]] = []
    result = run_client(
        slow_server,
        rate_hz=1000,
        duration_s=0.1,
        max_outstanding=4,
        timeout_s=0.03,
        on_answer=lambda seq, at, us: seen.append((seq, at, us)),
    )
    assert sorted(seq for seq, _, _ in seen) == list(range(100))
    assert sum(1 for _, _, us in seen if us == float("inf")) == result.timed_out
    answered = sorted((seq, us) for seq, _, us in seen if us != float("inf"))
    assert np.array_equal(np.asarray([us for _, us in answered]), result.latencies_us)
    at = dict((seq, ns) for seq, ns, _ in seen)
    assert at[99] - at[0] == pytest.approx(99e6, abs=1)  # scheduled 1 ms apart


def test_measure_runs_the_client_as_its_own_process() -> None:
    with ProbeWorkload(rate_hz=500, work_us=20) as probe:
        tail = probe.measure(0.4)
        assert probe.last_result is not None
        assert probe.last_result.received == 200
        server = probe.server_pid
    assert tail.count == 200 and tail.timed_out == 0 and tail.p50_us > 0
    assert tail.throughput == pytest.approx(500)
    assert server is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)


def test_bad_client_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        run_client("unix:/nonexistent", rate_hz=0)
