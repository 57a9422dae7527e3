"""Prometheus metrics, parsed with the client library's own parser: from a state directory
(``lumos-mcp metrics``) and from a running server (``/metrics`` behind the token)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from lumos_mcp import anchor
from lumos_mcp.cli import main
from lumos_mcp.errors import PolicyDeniedError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.metrics import render, state_dir_facts
from lumos_mcp.service import Service
from lumos_mcp.web import operator_routes
from tests.http_helpers import free_port, serving_http
from tests.test_replay import POLICY, Clock, scripted_session

TOKEN = "metrics-test-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def busy_service(make_service: Callable[..., Service]) -> tuple[Service, Clock]:
    """The replay test's session, then a denied change, a pending approval and an armed change."""
    clock = Clock()
    service = make_service(policy=POLICY, clock=clock)
    scripted_session(service, clock)
    service.stage({"vm.dirty_ratio": 60})  # above the policy's max: denied
    asks = service.stage({"cgroup.batch.cpu_weight": 150})
    service.request_approval(asks.tx.id)
    armed = service.stage({"vm.swappiness": 40}, confirm_within_s=90)
    service.apply(armed.tx.id)
    clock.now += 30
    return service, clock


def check(found: dict[Any, float]) -> None:
    assert found[("lumos_transactions_total", (("outcome", "committed"),))] == 2
    assert found[("lumos_transactions_total", (("outcome", "reverted"),))] == 1
    assert found[("lumos_transactions_total", (("outcome", "auto_reverted"),))] == 1
    assert found[("lumos_auto_reverts_total", (("cause", "deadline"),))] == 1
    assert found[("lumos_policy_denials_total", (("rule", "above_max"),))] == 1
    assert found[("lumos_pending_approvals", ())] == 1
    assert found[("lumos_armed_transactions", ())] == 1
    (left,) = [v for (name, _), v in found.items() if name == "lumos_seconds_to_deadline"]
    assert left == pytest.approx(60, abs=0.01)
    assert found[("lumos_journal_problems", ())] == 0
    mode = (("knob", "vm.swappiness"), ("mode", "live"))
    assert found[("lumos_knob_value", mode)] == 40
    assert found[("lumos_knob_original_value", mode)] == 60
    ratio = (("knob", "vm.dirty_ratio"), ("mode", "live"))
    assert found[("lumos_knob_value", ratio)] == 12
    assert found[("lumos_knob_original_value", ratio)] == 20


def test_metrics_of_a_state_dir_parse_and_count_what_the_session_did(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service, clock = busy_service(make_service)
    text = render(lambda: state_dir_facts(service.state_dir, host_root=fake.base, clock=clock)).decode()
    check(samples(text))


def test_a_denial_is_counted_by_its_rule_once_per_verdict(make_service: Callable[..., Service]) -> None:
    service = make_service(policy=POLICY)
    staged = service.stage({"vm.dirty_ratio": 60})
    with pytest.raises(PolicyDeniedError):
        service.apply(staged.tx.id)
    found = samples(render(lambda: state_dir_facts(service.state_dir)).decode())
    # applying a change its verdict denied is refused without a second verdict
    assert found[("lumos_policy_denials_total", (("rule", "above_max"),))] == 1
    assert ("lumos_policy_denials_total", (("rule", "step_too_large"),)) not in found


@pytest.mark.anyio
async def test_the_http_endpoint_needs_the_token_and_serves_the_live_service(
    make_service: Callable[..., Service],
) -> None:
    service, _ = busy_service(make_service)
    app = Starlette(routes=operator_routes(service, TOKEN))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (
            await http.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"})
        ).status_code == 401
        answer = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    check(samples(answer.text))


def test_the_metrics_command_writes_a_textfile_for_node_exporter(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    service, _ = busy_service(make_service)
    out = tmp_path / "lumos.prom"
    assert main(["metrics", "--state-dir", str(service.state_dir), "--output", str(out)]) == 0
    found = samples(out.read_text())
    assert found[("lumos_transactions_total", (("outcome", "committed"),))] == 2
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.anyio
async def test_the_operator_routes_answer_only_for_their_own_host_name(make_service: Callable[..., Service]) -> None:
    service = make_service(policy=POLICY)
    app = Starlette(routes=operator_routes(service, TOKEN, "127.0.0.1", 8765))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as http:
        assert (await http.get("/metrics", headers=auth)).status_code == 200
    async with httpx2.AsyncClient(transport=transport, base_url="http://localhost:8765") as http:
        assert (await http.get("/metrics", headers=auth)).status_code == 200
    async with httpx2.AsyncClient(transport=transport, base_url="http://rebound.example:8765") as http:
        refused = await http.get("/console", headers=auth)
    assert refused.status_code == 421
    assert refused.json()["error"]["code"] == "misdirected"


@pytest.mark.slow
@pytest.mark.anyio
async def test_serve_http_serves_metrics_and_the_console_and_anchors_the_audit_head(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "lumos_mcp", "serve", "--http", "--port", str(port), "--mode", "sandbox"]
    env = {**os.environ, "LUMOS_STATE_DIR": str(tmp_path / "state"), "LUMOS_MCP_TOKEN": TOKEN}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    with serving_http(cmd, env, port, tmp_path / "server.log") as url:
        base = url.removesuffix("/mcp")
        async with httpx2.AsyncClient(base_url=base) as http:
            assert (await http.get("/metrics")).status_code == 401
            answer = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 200
            found = samples(answer.text)
            assert found[("lumos_armed_transactions", ())] == 0
            page = await http.get("/console")
            assert page.status_code == 200 and 'name="token"' in page.text
            anchors = tmp_path / "state" / "audit-anchors.jsonl"
            with anyio.fail_after(30):  # the first deadline-loop tick publishes the head
                while not anchors.exists() or not anchors.read_text():
                    await anyio.sleep(0.1)
    published = anchor.parse(anchors.read_text().splitlines())
    assert published and anchor.check(tmp_path / "state" / "audit.jsonl", published).ok
