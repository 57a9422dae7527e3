"""A real HTTP server on loopback: conflicting agents, concurrent clients, intruders; and
audit log tampering."""

from __future__ import annotations

from pathlib import Path

from lumos_mcp.selftest import concurrency, intruders
from lumos_mcp.selftest.common import Outcome


def test_two_agents_applying_at_once_get_one_winner_and_one_conflict(tmp_path: Path) -> None:
    out = Outcome("concurrency")
    with intruders.http_server(tmp_path) as server:
        concurrency.run_conflicts(server, out, rounds=5)
        concurrency.run_load(server, out, clients=10, calls=20)
        intruders.run_intruders(server, out)
        intruders.run_slowloris(server, out, connections=100)
    f = out.figures
    assert out.problems == []
    assert f["conflict_exactly_one_winner"] == 5
    assert f["conflict_loser_codes"] == {"conflict": 5}
    assert f["http_failures"] == 0
    assert f["http_completed"] == 200
    assert f["intruders_refused"] == f["intruder_attempts"]
    assert f["intruders_reaching_a_tool"] == 0
    assert f["control_call"] == "staged"
    assert f["slowloris_still_open"] == 0 and f["slowloris_control_call"] == "staged"


def test_audit_log_detects_every_edit_delete_insert_and_reorder(tmp_path: Path) -> None:
    out = Outcome("intruders")
    intruders.run_audit_tamper(tmp_path, out, positions=6)
    assert out.problems == []
    assert out.figures["audit_tamperings_detected"] == out.figures["audit_tamperings"] == 30
