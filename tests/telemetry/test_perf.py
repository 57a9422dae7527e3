from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from lumos_mcp.errors import InvalidTelemetryRequestError
from lumos_mcp.telemetry import PerfStat, parse_perf_line

# Lines recorded from `perf stat -a -I 1000 -x, -e ...` on this machine (perf 6.1, kernel 6.18).
RECORDED = """\
     1.001086085,101,,context-switches,2002505141,100.00,50.437,/sec
     1.001086085,8,,cpu-migrations,2002503769,100.00,3.995,/sec
     1.001086085,0,,page-faults,2002502418,100.00,0.000,/sec
     1.001086085,2002.50,msec,task-clock,2002501736,100.00,2.003,CPUs utilized
     1.001086085,<not supported>,,cycles,0,100.00,,
     1.001086085,<not supported>,,instructions,0,100.00,,
"""

FAKE_PERF = """\
#!{python}
import signal, sys, time
args = sys.argv[1:]
interval_s = int(args[args.index("-I") + 1]) / 1000
events = args[args.index("-e") + 1].split(",")
unsupported = set({unsupported!r})
counts = {{"context-switches": 50, "cpu-migrations": 4, "page-faults": 10, "task-clock": 2000.0,
          "cycles": 3000000000, "instructions": 1500000000, "cache-misses": 1000, "LLC-load-misses": 300}}
{ignore_sigint}
def emit(t):
    for e in events:
        if e in unsupported:
            print(f"{{t:14.9f}},<not supported>,,{{e}},0,100.00,,", file=sys.stderr, flush=True)
        else:
            unit = "msec" if e == "task-clock" else ""
            print(f"{{t:14.9f}},{{counts[e] * interval_s}},{{unit}},{{e}},1000,100.00,,", file=sys.stderr, flush=True)
k = 0
try:
    while True:
        k += 1
        emit(k * interval_s)
        time.sleep(0.01)
except KeyboardInterrupt:
    sys.exit(0)
"""

FORBIDDEN = """\
#!/bin/sh
cat >&2 <<'MSG'
Error:
Access to performance monitoring and observability operations is limited.
perf_event_paranoid setting is 2:
MSG
exit 255
"""


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bin" / "perf"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)
    return str(path)


def fake_perf(tmp_path: Path, unsupported: tuple[str, ...] = (), ignore_sigint: bool = False) -> str:
    return script(
        tmp_path,
        FAKE_PERF.format(
            python=sys.executable,
            unsupported=unsupported,
            ignore_sigint="signal.signal(signal.SIGINT, signal.SIG_IGN)" if ignore_sigint else "",
        ),
    )


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    with anyio.fail_after(timeout_s):
        while not predicate():
            await anyio.sleep(0.01)


def assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_recorded_csv_lines_parse_into_counts_and_not_supported() -> None:
    records = [parse_perf_line(line) for line in RECORDED.splitlines()]
    assert all(r is not None for r in records)
    by_event = {r.event: r for r in records if r is not None}
    assert by_event["context-switches"].count == 101.0
    assert by_event["task-clock"].unit == "msec" and by_event["task-clock"].count == 2002.5
    assert by_event["cycles"].count is None and by_event["cycles"].status == "<not supported>"
    assert by_event["cycles"].time_s == pytest.approx(1.001086085)


@pytest.mark.parametrize("line", ["", "# started on Mon", "Error:", "1.0,5", "abc,1,,cycles,0,100.00,,"])
def test_lines_that_are_not_records_are_ignored(line: str) -> None:
    assert parse_perf_line(line) is None


def test_not_counted_is_a_record_without_a_count() -> None:
    r = parse_perf_line("2.0,<not counted>,,LLC-load-misses,0,0.00,,")
    assert r is not None and r.count is None and r.status == "<not counted>"


@pytest.mark.anyio
async def test_streamed_intervals_become_per_event_rates(tmp_path: Path) -> None:
    perf = PerfStat(interval_ms=1000, perf_path=fake_perf(tmp_path))
    perf.start()
    pid = perf.pid
    assert pid is not None
    try:
        await until(lambda: len(perf.intervals()) >= 2)
        rates = perf.rates()
        assert rates["context-switches"] == pytest.approx(50.0)
        assert rates["task-clock"] == pytest.approx(2.0)  # 2000 ms of CPU per s = 2 CPUs
        assert rates["instructions"] / rates["cycles"] == pytest.approx(0.5)
        assert perf.unavailable == {}
    finally:
        perf.stop()
    assert not perf.running
    assert_reaped(pid)


@pytest.mark.anyio
async def test_hardware_events_not_supported_are_listed_with_a_reason(tmp_path: Path) -> None:
    hw = ("cycles", "instructions", "cache-misses", "LLC-load-misses")
    perf = PerfStat(interval_ms=1000, perf_path=fake_perf(tmp_path, unsupported=hw))
    perf.start()
    try:
        await until(lambda: perf.latest() is not None)
        assert set(perf.unavailable) == set(hw)
        assert all("not supported" in reason for reason in perf.unavailable.values())
        assert set(perf.rates()) == {"context-switches", "cpu-migrations", "page-faults", "task-clock"}
    finally:
        perf.stop()


@pytest.mark.anyio
async def test_forbidden_perf_is_reported_for_every_event(tmp_path: Path) -> None:
    perf = PerfStat(perf_path=script(tmp_path, FORBIDDEN))
    perf.start()
    try:
        await until(lambda: "perf" in perf.unavailable)
        assert "forbidden" in perf.unavailable["perf"]
        assert set(perf.events) <= set(perf.unavailable)
        assert perf.latest() is None
    finally:
        perf.stop()


def test_missing_perf_binary_degrades_instead_of_raising(tmp_path: Path) -> None:
    perf = PerfStat(perf_path=str(tmp_path / "no-such-perf"))
    perf.start()
    assert "not installed" in perf.unavailable["perf"]
    assert perf.rates() == {}
    perf.stop()


def test_perf_found_on_path_is_the_fake_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_perf(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    perf = PerfStat(events=("context-switches",))
    assert perf.command[0] == "perf"
    perf.start()
    pid = perf.pid
    perf.stop()
    assert pid is not None
    assert_reaped(pid)


@pytest.mark.anyio
async def test_stop_kills_a_perf_that_ignores_sigint_within_the_bound(tmp_path: Path) -> None:
    perf = PerfStat(perf_path=fake_perf(tmp_path, ignore_sigint=True), stop_timeout_s=0.2)
    perf.start()
    pid = perf.pid
    assert pid is not None
    await until(lambda: perf.latest() is not None)
    with anyio.fail_after(10):
        await anyio.to_thread.run_sync(perf.stop)
    assert_reaped(pid)


@pytest.mark.parametrize("events", [("cycles,instructions",), ("cycles; rm -rf /",), ()])
def test_event_names_that_could_inject_arguments_are_refused(events: tuple[str, ...]) -> None:
    with pytest.raises(InvalidTelemetryRequestError):
        PerfStat(events=events)


def _real_perf_usable() -> bool:
    if shutil.which("perf") is None:
        return False
    try:
        paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
    except (OSError, ValueError):
        return False
    return os.geteuid() == 0 or paranoid <= 0


@pytest.mark.perf
@pytest.mark.skipif(not _real_perf_usable(), reason="perf absent or system-wide counting not permitted")
@pytest.mark.anyio
async def test_real_perf_counts_software_events_and_explains_hardware_ones() -> None:
    perf = PerfStat(interval_ms=100, events=("context-switches", "task-clock", "cycles"))
    perf.start()
    pid = perf.pid
    try:
        await until(lambda: perf.latest() is not None or "perf" in perf.unavailable)
        assert "perf" not in perf.unavailable
        rates = perf.rates()
        assert "context-switches" in rates and rates["task-clock"] > 0
        assert ("cycles" in rates) != ("cycles" in perf.unavailable)
    finally:
        perf.stop()
    assert pid is not None
    assert_reaped(pid)


def test_a_perf_that_cannot_be_executed_degrades(tmp_path: Path) -> None:
    path = tmp_path / "perf"
    path.write_text("not a program")
    path.chmod(0o644)
    perf = PerfStat(perf_path=str(path))
    perf.start()
    assert "cannot be executed" in perf.unavailable["perf"]
    perf.stop()
