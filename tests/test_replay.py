"""Replay rebuilds what happened from the audit log alone: each knob's values over time, the
state at a moment, and every staged change judged again under another policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from mcp import Client

from lumos_mcp.audit import iter_records
from lumos_mcp.cli import main
from lumos_mcp.errors import AuditChainBrokenError
from lumos_mcp.policy import load_policy
from lumos_mcp.replay import load
from lumos_mcp.resources import policy_path
from lumos_mcp.server import build_server
from lumos_mcp.service import Service

POLICY = str(Path(__file__).parent / "data" / "policy-test.toml")
KNOBS = ("vm.swappiness", "vm.dirty_ratio")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def scripted_session(service: Service, clock: Clock) -> list[tuple[float, dict[str, Any]]]:
    """Stage, apply, commit, revert and let deadlines lapse; after each step, the values read."""
    seen: list[tuple[float, dict[str, Any]]] = []

    def step(seconds: float) -> None:  # the knobs are read right after an action, then time passes
        seen.append((clock.now, {k: service.backend.read(k).value for k in KNOBS}))
        clock.now += seconds

    step(1)
    kept = service.stage({"vm.swappiness": 20}, rationale="fewer major faults")
    step(1)
    service.apply(kept.tx.id)
    step(5)
    service.commit(kept.tx.id)
    step(5)
    lapsed = service.stage({"vm.swappiness": 30, "vm.dirty_ratio": 15}, confirm_within_s=10)
    service.apply(lapsed.tx.id)
    step(5)
    clock.now += 6  # past the deadline
    service.expire_due()
    step(0.5)
    undone = service.stage({"vm.dirty_ratio": 25}, rationale="more write-back room")
    service.apply(undone.tx.id)
    step(3)
    service.revert(undone.tx.id)
    step(3)
    again = service.stage({"vm.dirty_ratio": 12})
    service.apply(again.tx.id)
    step(2)
    service.commit(again.tx.id)
    step(10)
    return seen


@pytest.fixture
def session(make_service: Callable[..., Service]) -> tuple[Service, list[tuple[float, dict[str, Any]]]]:
    clock = Clock()
    service = make_service(policy=POLICY, clock=clock)
    return service, scripted_session(service, clock)


def test_replay_reproduces_the_values_read_at_each_step_of_a_session(
    session: tuple[Service, list[tuple[float, dict[str, Any]]]],
) -> None:
    service, seen = session
    result = load(service.audit.path)
    assert result.verified
    for ts, values in seen:
        for knob, value in values.items():
            assert result.value_at(knob, ts) == value, (knob, ts)
    states = [s.state for s in result.timelines["vm.swappiness"]]
    assert states == ["original", "committed", "armed", "auto_reverted"]
    events = [m.event for m in result.marks["vm.dirty_ratio"]]
    assert events == ["apply", "auto_revert", "apply", "revert", "apply", "commit"]
    assert result.marks["vm.dirty_ratio"][1].reason == "deadline"


def test_replay_at_a_moment_names_the_transaction_actor_and_rationale(
    session: tuple[Service, list[tuple[float, dict[str, Any]]]],
) -> None:
    service, seen = session
    at = load(service.audit.path).at(seen[2][0])
    assert at["vm.swappiness"].value == 20
    assert at["vm.swappiness"].actor == "agent"
    assert at["vm.swappiness"].rationale == "fewer major faults"
    assert at["vm.swappiness"].tx is not None
    assert at["vm.dirty_ratio"].state == "original"


def test_rejudging_under_the_readonly_policy_denies_every_staged_change(
    session: tuple[Service, list[tuple[float, dict[str, Any]]]],
) -> None:
    service, _ = session
    result = load(service.audit.path, policy=load_policy(policy_path("readonly")))
    staged = [r for r in iter_records(service.audit.path) if r["event"] == "stage"]
    assert result.rejudged_count == len(staged) == 4
    assert result.rejudged is not None and len(result.rejudged) == 4
    for r in result.rejudged:
        assert r.was["allowed"] is True
        assert r.now["allowed"] is False
        assert r.now["denials"]


def test_rejudging_under_the_same_policy_changes_no_decision(
    session: tuple[Service, list[tuple[float, dict[str, Any]]]],
) -> None:
    service, _ = session
    result = load(service.audit.path, policy=load_policy(Path(POLICY)))
    assert result.rejudged_count == 4
    assert result.rejudged == []


def tamper(path: Path, seq: int, **changes: Any) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    out = []
    for line in lines:
        rec = orjson.loads(line)
        if rec["seq"] == seq:
            rec.update(changes)
            line = orjson.dumps(rec) + b"\n"
        out.append(line)
    path.write_bytes(b"".join(out))


def test_a_tampered_log_is_refused_unless_asked_for_what_precedes_the_break(
    session: tuple[Service, list[tuple[float, dict[str, Any]]]],
) -> None:
    service, _ = session
    path = service.audit.path
    apply = next(r for r in iter_records(path) if r["event"] == "apply")
    tamper(path, apply["seq"], values={"vm.swappiness": 90})
    with pytest.raises(AuditChainBrokenError) as caught:
        load(path)
    assert caught.value.fields["problem"] == "edited"
    assert caught.value.fields["seq"] == apply["seq"]
    partial = load(path, partial=True)
    assert not partial.verified
    assert partial.records == apply["seq"] - 1
    assert [s.state for s in partial.timelines["vm.swappiness"]] == ["original"]


def test_the_cli_refuses_a_tampered_log_and_prints_json_and_a_plot(
    session: tuple[Service, list[tuple[float, dict[str, Any]]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service, seen = session
    state = str(service.state_dir)
    png = tmp_path / "replay.png"
    assert main(["audit", "replay", "--state-dir", state, "--json", "--png", str(png), "--at", str(seen[2][0])]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["at"]["knobs"]["vm.swappiness"]["value"] == 20
    assert [s["value"] for s in data["knobs"]["vm.swappiness"]] == [60, 20, 30, 20]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["audit", "replay", "--state-dir", state, "--policy", "readonly"]) == 0
    assert "4 decided differently" in capsys.readouterr().out
    path = service.audit.path
    tamper(path, 3, actor="someone-else")
    assert main(["audit", "replay", "--state-dir", state]) == 1
    assert main(["audit", "replay", "--state-dir", state, "--partial", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is False


@pytest.mark.anyio
async def test_an_agent_reads_its_history_through_the_read_only_replay_tool(
    session: tuple[Service, list[tuple[float, dict[str, Any]]]],
) -> None:
    service, seen = session
    async with Client(build_server(service)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["replay_audit"].annotations is not None
        assert tools["replay_audit"].annotations.read_only_hint is True
        result = await client.call_tool("replay_audit", {"knob": "vm.swappiness", "at": str(seen[2][0])})
        assert not result.is_error, result.content
        data = result.structured_content
        assert data is not None
        assert [s["value"] for s in data["knobs"]["vm.swappiness"]] == [60, 20, 30, 20]
        assert data["at"]["vm.swappiness"]["rationale"] == "fewer major faults"
        tamper(service.audit.path, 2, actor="someone-else")
        refused = await client.call_tool("replay_audit", {})
    assert refused.is_error
    assert json.loads(refused.content[0].text)["error"]["code"] == "audit_chain_broken"  # type: ignore[union-attr]
