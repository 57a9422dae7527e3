"""Smoke tests of the benchmarks: each runs in --quick mode and prints its tables (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import bench_compare, bench_sampler, bench_tokens, bench_tools

pytestmark = pytest.mark.slow


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_bench_tools_quick_prints_every_operation_on_both_transports(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_tools.main(["--quick", "--no-doc"]) == 0
    out = capsys.readouterr().out
    assert "## MCP tool-call latency" in out
    rows = table_rows(out)
    assert rows[0] == list(bench_tools.HEADER)
    measured = {(r[0], r[1]) for r in rows[1:]}
    assert measured == {(op, t) for op in bench_tools.ROWS for t in bench_tools.TRANSPORTS}
    noop_ratios = {r[5] for r in rows[1:] if r[0] == "noop"}
    assert noop_ratios == {"1.0"}


def test_bench_sampler_quick_prints_the_cost_of_each_rate_and_the_latency_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_sampler.main(["--quick", "--no-doc"]) == 0
    out = capsys.readouterr().out
    assert "## Telemetry cost" in out
    assert "Target (at most 0.5% of one core at 1 Hz)" in out
    rows = table_rows(out)
    conditions = [r[0] for r in rows if len(r) == len(bench_sampler.HEADER) and r[0] != "condition"]
    assert conditions == list(bench_sampler.CONDITIONS)
    latency = {(r[0], r[1]) for r in rows if len(r) == 7 and r[0] != "operation"}
    assert latency == {
        (op, rate) for op in ("noop", "read_telemetry", bench_tools.UNVALIDATED) for rate in ("1 Hz", "10 Hz")
    }


def test_the_benchmarks_write_no_file_unless_given_an_out_path() -> None:
    assert bench_tools.parser().parse_args([]).out is None
    assert bench_sampler.parser().parse_args([]).out is None
    assert str(bench_tools.parser().parse_args(["--out", "docs/benchmarks.md"]).out) == "docs/benchmarks.md"


def test_bench_tokens_counts_each_answer_and_both_agents_sessions(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_tokens.main(["--cycles", "2", "--window-cycles", "1"]) == 0
    out = capsys.readouterr().out
    assert "## Tokens an LLM pays" in out
    rows = {r[0]: r[1:] for r in table_rows(out)}
    assert int(rows["`read_telemetry`"][0].replace(",", "")) < int(
        rows['`read_telemetry detail="full"`'][0].replace(",", "")
    )
    no_window = next(v for k, v in rows.items() if "no window" in k)
    windowed = next(v for k, v in rows.items() if "last 1 cycles kept" in k)
    assert int(windowed[0].split()[0].replace(",", "")) < int(no_window[0].split()[0].replace(",", ""))


def test_the_token_counter_works_offline_or_says_it_estimates() -> None:
    counter = bench_tokens.tokenizer()
    assert counter.count('{"cpu": {"util_pct": 12.5}}') > 0
    assert counter.name.startswith(("o200k_base", "estimate"))


def test_bench_compare_quick_prints_a_row_per_size_and_statistic(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_compare.main(["--quick"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows[0] == list(bench_compare.HEADER)
    assert [(r[0], r[1]) for r in rows[1:]] == [(n, s) for n in ("100", "1,000") for s in ("median", "p99")]
