"""Run the parts (short or long form) and print one table of figures, or JSON."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumos_mcp.selftest.common import Outcome


@dataclass(frozen=True)
class Sizes:
    crash_trials: int
    exit_trials: int
    fuzz_calls: int
    conflict_rounds: int
    http_clients: int
    http_calls: int
    tamper_positions: int


SHORT = Sizes(
    crash_trials=100,
    exit_trials=1,
    fuzz_calls=300,
    conflict_rounds=10,
    http_clients=10,
    http_calls=20,
    tamper_positions=4,
)
LONG = Sizes(
    crash_trials=1000,
    exit_trials=5,
    fuzz_calls=10000,
    conflict_rounds=100,
    http_clients=50,
    http_calls=200,
    tamper_positions=11,
)

# figures that must be zero, and pairs (a, b) where a must equal b
MUST_BE_ZERO = (
    "mismatches",
    "unaccounted_files",
    "audit_breaks",
    "child_errors",
    "untyped_errors",
    "writes_outside_policy",
    "http_failures",
    "intruders_reaching_a_tool",
    "cases_failed",
    "exits_late",
    "exit_processes_left",
    "slowloris_still_open",
)


def run_all(long: bool = False, base: Path | None = None, seed: int = 1, only: tuple[str, ...] = ()) -> list[Outcome]:
    """Every part, in order, each in its own directory under ``base`` (a temporary one if None)."""
    from lumos_mcp.selftest import concurrency, crash, fuzz, intruders, storage

    sizes = LONG if long else SHORT
    for name in ("mcp", "httpx2", "uvicorn", "hypothesis"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def _intruders(d: Path) -> Outcome:
        out = Outcome("intruders")
        d.mkdir(parents=True, exist_ok=True)
        with intruders.http_server(d) as server:
            intruders.run_intruders(server, out)
            intruders.run_slowloris(server, out)
        intruders.run_audit_tamper(d / "audit", out, positions=sizes.tamper_positions, seed=seed)
        return out

    parts: dict[str, Callable[[Path], Outcome]] = {
        "crash": lambda d: crash.run(d, trials=sizes.crash_trials, seed=seed, exit_trials=sizes.exit_trials),
        "storage": storage.run,
        "fuzz": lambda d: fuzz.run(d, calls=sizes.fuzz_calls, seed_value=seed),
        "concurrency": lambda d: concurrency.run(
            d, rounds=sizes.conflict_rounds, clients=sizes.http_clients, calls=sizes.http_calls
        ),
        "intruders": _intruders,
    }
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="lumos-selftest-") as tmp:
        root = base or Path(tmp)
        for name, part in parts.items():
            if only and name not in only:
                continue
            t0 = time.monotonic()
            try:
                outcome = part(root / name)
            except Exception as e:  # noqa: BLE001 - one part's harness failure must not hide the others' figures
                outcome = Outcome(name)
                outcome.fail(f"the {name} part itself failed: {type(e).__name__}: {e}")
            outcome.figures["seconds"] = round(time.monotonic() - t0, 1)
            outcomes.append(outcome)
    return outcomes


ROWS: list[tuple[str, str, str]] = [
    ("crash", "trials", "kill-and-recover trials (fresh server after each)"),
    ("crash", "kills", "SIGKILLs delivered"),
    ("crash", "kill_points_covered", "distinct crash points killed at"),
    ("crash", "recovery_kills", "kills inside recovery itself"),
    ("crash", "knobs_checked", "knob values compared with the journal"),
    ("crash", "mismatches", "knobs differing from the journal's truth"),
    ("crash", "unaccounted_files", "files changed that no knob accounts for"),
    ("crash", "audit_breaks", "audit hash chain broken after a kill"),
    ("crash", "exit_trials", "servers ended with a change armed (EOF, SIGTERM, SIGINT, SIGKILL)"),
    ("crash", "exits_late", "changes not back at the original by deadline + 2 s"),
    ("crash", "exit_processes_left", "server or watchdog processes left behind"),
    ("crash", "exit_revert_max_s", "longest exit-to-original time (s)"),
    ("storage", "cases", "storage fault cases run"),
    ("storage", "cases_failed", "cases where a knob or error was wrong"),
    ("storage", "torn_tail", "torn journal tail"),
    ("storage", "corrupt_journal", "garbage inside the journal"),
    ("storage", "disk_full", "full disk (64 KiB tmpfs)"),
    ("storage", "full_at_deadline", "journal and audit full while deadlines fire"),
    ("storage", "read_only", "read-only state directory"),
    ("storage", "missing_dir", "missing state directory"),
    ("storage", "two_servers", "two servers, one state directory"),
    ("fuzz", "calls", "fuzzed tool calls through the MCP client"),
    ("fuzz", "typed_errors", "errors with a code"),
    ("fuzz", "untyped_errors", "errors without a code"),
    ("fuzz", "writes_seen", "files written (by permitted applies/reverts)"),
    ("fuzz", "writes_outside_policy", "writes outside the policy"),
    ("concurrency", "conflict_rounds", "rounds of two agents applying at once"),
    ("concurrency", "conflict_exactly_one_winner", "rounds with one winner, one 'conflict'"),
    ("concurrency", "http_calls", "HTTP calls (clients x calls)"),
    ("concurrency", "http_failures", "failed HTTP calls"),
    ("concurrency", "http_p50_ms", "HTTP call latency p50 (ms)"),
    ("concurrency", "http_p99_ms", "HTTP call latency p99 (ms)"),
    ("concurrency", "http_calls_per_s", "HTTP throughput (calls/s)"),
    ("intruders", "intruder_attempts", "intrusion attempts over HTTP"),
    ("intruders", "intruders_refused", "refused with the expected status"),
    ("intruders", "intruders_reaching_a_tool", "reached a tool (audit log moved)"),
    ("intruders", "slowloris_connections", "half-sent requests held by one client"),
    ("intruders", "slowloris_still_open", "still open after the request timeout"),
    ("intruders", "slowloris_control_call_s", "another client's call meanwhile (s)"),
    ("intruders", "audit_tamperings", "audit tamperings (edit/delete/insert/reorder)"),
    ("intruders", "audit_tamperings_detected", "tamperings detected by verify"),
]


def as_json(outcomes: list[Outcome]) -> dict[str, Any]:
    return {
        "ok": all(o.ok for o in outcomes),
        "parts": {
            o.name: {"ok": o.ok, "figures": o.figures, "problems": o.problems, "skipped": o.skipped} for o in outcomes
        },
    }


def render(outcomes: list[Outcome], long: bool) -> Any:
    """The one table (a rich Table)."""
    from rich.table import Table

    by_name = {o.name: o for o in outcomes}
    table = Table(title=f"lumos-mcp selftest ({'long' if long else 'short'} form)")
    table.add_column("part")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("", justify="center")
    for part, key, label in ROWS:
        o = by_name.get(part)
        if o is None or key not in o.figures:
            continue
        value = o.figures[key]
        verdict = ""
        if key in MUST_BE_ZERO:
            verdict = "ok" if value == 0 else "FAIL"
        table.add_row(part, label, str(value), verdict)
    for o in outcomes:
        for s in o.skipped:
            table.add_row(o.name, f"skipped: {s}", "", "-")
        table.add_row(o.name, "seconds", str(o.figures.get("seconds", "")), "ok" if o.ok else "FAIL")
    return table
