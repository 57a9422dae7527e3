from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from telemetry_helpers import FakeClock, recorded_tree

from lumos_mcp.errors import InvalidMetricError, ScrapeError, ScrapeRefusedError
from lumos_mcp.telemetry import Telemetry, parse_prometheus_text, scrape_prometheus
from lumos_mcp.telemetry.app import AppMetrics, loopback_url, percentile

EXPOSITION = """\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method="get",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"} 3
# TYPE request_latency_p99_seconds gauge
request_latency_p99_seconds 0.0123
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.99"} 0.076
rpc_duration_seconds_sum 17560473
rpc_duration_seconds_count 2693
weird_label{path="a\\"b\\\\c"} +Inf
untyped_thing 42
"""


def test_app_metric_summary_has_last_mean_and_p95_over_the_window() -> None:
    clock = FakeClock(0.0)
    app = AppMetrics(clock)
    for i in range(1, 21):
        clock.now = float(i)
        app.report("p99_latency_ms", float(i), "ms")
    summaries, missing = app.summaries(since=11.0, now=20.0)
    (s,) = summaries
    assert (s["last"], s["mean"], s["count"], s["unit"]) == (20.0, 15.5, 10, "ms")
    assert s["p95"] == pytest.approx(percentile([float(v) for v in range(11, 21)], 95))
    assert missing == {}


@pytest.mark.parametrize(
    ("name", "value", "unit"),
    [
        ("bad name", 1.0, "ms"),
        ("", 1.0, "ms"),
        ("9lives", 1.0, "ms"),
        ("ok", float("nan"), "ms"),
        ("ok", float("inf"), "ms"),
        ("ok", True, "ms"),
        ("ok", "12", "ms"),
        ("ok", 1.0, ""),
        ("ok", 1.0, "m s"),
    ],
)
def test_bad_app_metrics_are_refused_with_a_typed_error(name: str, value: object, unit: str) -> None:
    app = AppMetrics(FakeClock())
    with pytest.raises(InvalidMetricError) as info:
        app.report(name, value, unit)  # type: ignore[arg-type]
    assert info.value.code == "invalid_metric"
    assert app.names() == []


def test_a_metric_keeps_its_first_unit() -> None:
    app = AppMetrics(FakeClock())
    app.report("tps", 100, "1/s")
    with pytest.raises(InvalidMetricError):
        app.report("tps", 100, "ms")


def test_the_number_of_metric_names_is_bounded() -> None:
    app = AppMetrics(FakeClock(), max_metrics=2)
    app.report("a", 1, "ms")
    app.report("b", 1, "ms")
    with pytest.raises(InvalidMetricError):
        app.report("c", 1, "ms")


def test_reported_metrics_appear_in_the_signature_and_trends(tmp_path: Path) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    clock = FakeClock()
    t = Telemetry(fake.root, clock=clock)
    for i in range(12):
        t.sampler.sample_once()
        t.report_app_metric("p99_ms", 2.0 if i < 7 else 20.0, "ms")
        clock.advance(1.0)
    sig = t.signature(5, sections={"app"})
    assert sig.app is not None
    (p99,) = sig.app
    assert p99.name == "p99_ms" and p99.last == 20.0 and p99.unit == "ms"
    trends = t.trends(window_s=5, baseline_s=6, sections={"app"})
    assert [s.metric for s in trends.shifts] == ["app.p99_ms"]


def test_prometheus_text_parser_reads_types_labels_and_escapes() -> None:
    samples = parse_prometheus_text(EXPOSITION)
    by = {(s.name, tuple(sorted(s.labels.items()))): s for s in samples}
    get = by[("http_requests_total", (("code", "200"), ("method", "get")))]
    assert get.value == 1027 and get.type == "counter"
    assert by[("request_latency_p99_seconds", ())].type == "gauge"
    assert by[("rpc_duration_seconds_count", ())].type == "summary"
    assert by[("weird_label", (("path", 'a"b\\c'),))].value == float("inf")
    assert by[("untyped_thing", ())].type == "untyped"


@pytest.mark.parametrize("text", ["metric{a=1} 2\n", 'metric{a="x} 2\n', "metric\n", "metric abc\n", '{a="b"} 1\n'])
def test_malformed_exposition_lines_are_scrape_errors(text: str) -> None:
    with pytest.raises(ScrapeError):
        parse_prometheus_text(text)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:9100/metrics",
        "http://example.com/metrics",
        "http://127.0.0.1.nip.io/metrics",
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/metrics",
        "http://[::ffff:8.8.8.8]/metrics",
        "http://0.0.0.0:9100/metrics",
    ],
)
def test_non_loopback_scrapes_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(ScrapeRefusedError) as info:
        scrape_prometheus(url)
    assert info.value.code == "scrape_refused"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://localhost:9100/metrics", "http://127.0.0.1:9100/metrics"),
        ("http://127.0.0.2/m?x=1", "http://127.0.0.2/m?x=1"),
        ("http://[::1]:80", "http://[::1]:80/"),
    ],
)
def test_loopback_urls_are_pinned_to_an_ip(url: str, target: str) -> None:
    assert loopback_url(url) == target


class _Handler(http.server.BaseHTTPRequestHandler):
    body = EXPOSITION.encode()

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://example.com/metrics")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_scrape_reads_a_local_endpoint(metrics_server: str) -> None:
    samples = scrape_prometheus(metrics_server + "/metrics", timeout_s=5)
    assert {s.name for s in samples} >= {"http_requests_total", "request_latency_p99_seconds"}


def test_scrape_does_not_follow_a_redirect_off_loopback(metrics_server: str) -> None:
    with pytest.raises(ScrapeError) as info:
        scrape_prometheus(metrics_server + "/redirect", timeout_s=5)
    assert info.value.fields["status"] == 302


def test_scrape_of_a_closed_port_is_a_scrape_error(metrics_server: str) -> None:
    with pytest.raises(ScrapeError) as info:
        scrape_prometheus("http://127.0.0.1:1/metrics", timeout_s=5)
    assert info.value.code == "scrape_failed"


def test_recorded_scrapes_report_gauges_and_counter_rates(tmp_path: Path, metrics_server: str) -> None:
    fake = recorded_tree(tmp_path, "6.18")
    clock = FakeClock()
    t = Telemetry(fake.root, clock=clock)
    first = t.record_prometheus(scrape_prometheus(metrics_server, timeout_s=5))
    assert "prom.request_latency_p99_seconds" in first
    assert not any(n.endswith("_per_s") for n in first)  # counters only seed on the first scrape
    clock.advance(2.0)
    bumped = [s for s in parse_prometheus_text(EXPOSITION.replace("} 1027", "} 1227"))]
    second = t.record_prometheus(bumped)
    rate_name = "prom.http_requests_total.200.get_per_s"
    assert rate_name in second
    assert t.app.series()[rate_name][-1][1] == pytest.approx(100.0)
