"""Every tool through the in-memory MCP client, in both protocol eras."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.types import ElicitRequestFormParams, ElicitRequestParams, ElicitResult

from lumos_mcp.api import tool_error
from lumos_mcp.audit import iter_records, verify
from lumos_mcp.errors import AuditError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.server import build_server
from lumos_mcp.service import Service

POLICY = str(Path(__file__).parent / "data" / "policy-test.toml")
MODES = ["auto", "legacy"]
ERA = {"auto": "2026-07-28", "legacy": "2025-11-25"}
pytestmark = pytest.mark.anyio


def answering(action: str, content: dict[str, Any] | None = None) -> Any:
    seen: list[ElicitRequestParams] = []

    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        seen.append(params)
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    callback.seen = seen  # type: ignore[attr-defined]
    return callback


async def call(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error_of(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    error = tool_error(result)
    assert error is not None, result.content
    assert result.structured_content is None  # it would have to match the tool's output schema
    return error.model_dump()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service(policy=POLICY)


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_declares_schemas_and_all_four_annotations(service: Service, mode: str) -> None:
    async with Client(build_server(service), mode=mode) as client:
        assert client.protocol_version == ERA[mode]
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in (
        "list_tunables",
        "read_telemetry",
        "stage_sched_params",
        "request_approval",
        "apply",
        "commit",
        "revert",
        "get_status",
    ):
        tool = tools[name]
        assert tool.output_schema is not None, name
        assert tool.description and len(tool.description) > 60, name
        a = tool.annotations
        assert a is not None and None not in (
            a.read_only_hint,
            a.destructive_hint,
            a.idempotent_hint,
            a.open_world_hint,
        ), name
    assert tools["apply"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert tools["list_tunables"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert "approval" not in tools["request_approval"].input_schema["properties"]


@pytest.mark.parametrize("mode", MODES)
async def test_list_tunables_reports_values_states_and_policy_bounds(service: Service, mode: str) -> None:
    async with Client(build_server(service), mode=mode) as client:
        data = await call(client, "list_tunables", {"detail": True})
    assert data["others"] is None
    knobs = {t["id"]: t for t in data["tunables"]}
    assert knobs["vm.swappiness"]["value"] == 60 and knobs["vm.swappiness"]["policy"]["allowed"]
    assert knobs["sched.base_slice_ns"]["state"] == "locked"
    assert knobs["sched.latency_ns"]["state"] == "not_on_this_kernel"
    assert knobs["cgroup.batch.cpu_weight"]["value"] == 100
    assert knobs["net.core.somaxconn"]["policy"]["allowed"] is False


async def test_list_tunables_lists_only_what_can_change_and_counts_the_rest(service: Service) -> None:
    async with Client(build_server(service)) as client:
        compact = await call(client, "list_tunables")
        everything = await call(client, "list_tunables", {"detail": True})
    listed = {t["id"] for t in compact["tunables"]}
    assert "vm.swappiness" in listed and "net.core.somaxconn" not in listed
    assert all(t["state"] == "available" and t["policy"]["allowed"] for t in compact["tunables"])
    others = compact["others"]
    assert "net.core.somaxconn" in others["outside_policy"]
    assert others["unavailable"]["locked"] >= 1 and others["unavailable"]["not_on_this_kernel"] >= 1
    counted = len(listed) + len(others["outside_policy"]) + sum(others["unavailable"].values())
    assert counted == len(everything["tunables"])


@pytest.mark.parametrize("mode", MODES)
async def test_stage_apply_commit_keeps_the_value(service: Service, fake: FakeKernel, mode: str) -> None:
    async with Client(build_server(service), mode=mode) as client:
        staged = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 10}})
        assert staged["allowed"] and not staged["approval_required"]
        assert staged["diff"] == [{"knob": "vm.swappiness", "before": 60, "after": 10, "unit": None}]
        assert fake.read("proc/sys/vm/swappiness").strip() == "60"  # staging never writes
        applied = await call(client, "apply", {"txid": staged["txid"]})
        assert applied["state"] == "applied" and 0 < applied["deadline_in_s"] <= 60
        assert fake.read("proc/sys/vm/swappiness").strip() == "10"
        status = await call(client, "get_status")
        assert [t["txid"] for t in status["armed"]] == [staged["txid"]]
        committed = await call(client, "commit", {"txid": staged["txid"]})
        assert committed["state"] == "committed"
    assert fake.read("proc/sys/vm/swappiness").strip() == "10"


@pytest.mark.parametrize("mode", MODES)
async def test_revert_restores_the_original(service: Service, fake: FakeKernel, mode: str) -> None:
    async with Client(build_server(service), mode=mode) as client:
        staged = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 30}})
        await call(client, "apply", {"txid": staged["txid"]})
        reverted = await call(client, "revert", {"txid": staged["txid"]})
    assert reverted["state"] == "reverted"
    assert reverted["restored"] == [{"knob": "vm.swappiness", "action": "restored", "detail": ""}]
    assert fake.read("proc/sys/vm/swappiness").strip() == "60"


@pytest.mark.parametrize("mode", MODES)
async def test_domain_errors_come_back_as_is_error_with_code_and_fields(service: Service, mode: str) -> None:
    async with Client(build_server(service), mode=mode) as client:
        unknown = await error_of(client, "stage_sched_params", {"changes": {"kernel.core_pattern": "|/bin/sh"}})
        assert unknown["code"] == "unknown_knob" and unknown["fields"]["knob"] == "kernel.core_pattern"
        escape = await error_of(client, "stage_sched_params", {"changes": {"cgroup.../../etc.cpu_weight": 5}})
        assert escape["code"] in ("invalid_parameter", "unknown_knob")
        bad = await error_of(client, "stage_sched_params", {"changes": {"vm.swappiness": 500}})
        assert bad["code"] == "invalid_value" and bad["fields"]["value"] == 500
        locked = await error_of(client, "stage_sched_params", {"changes": {"sched.base_slice_ns": 3000000}})
        assert locked["code"] == "locked"
        missing = await error_of(client, "apply", {"txid": "tx-nope"})
        assert missing["code"] == "unknown_transaction"


@pytest.mark.parametrize("mode", MODES)
async def test_policy_denial_names_rule_knob_value_and_limit(service: Service, fake: FakeKernel, mode: str) -> None:
    async with Client(build_server(service), mode=mode) as client:
        staged = await call(client, "stage_sched_params", {"changes": {"net.core.somaxconn": 8192}})
        assert not staged["allowed"]
        denial = staged["denials"][0]
        assert denial["knob"] == "net.core.somaxconn" and denial["rule"] and denial["value"] == 8192
        refused = await error_of(client, "apply", {"txid": staged["txid"]})
        assert refused["code"] == "policy_denied"
        cross = await call(client, "stage_sched_params", {"changes": {"vm.dirty_background_ratio": 30}})
        assert any(d["rule"] == "cross_field" for d in cross["denials"])
    assert fake.read("proc/sys/net/core/somaxconn").strip() == "4096"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("action", "content", "status"),
    [
        ("accept", {"approve": True}, "granted"),
        ("accept", {"approve": False}, "denied"),
        ("decline", None, "denied"),
        ("cancel", None, "denied"),
    ],
)
async def test_elicitation_decides_approval_and_only_yes_applies(
    service: Service, fake: FakeKernel, mode: str, action: str, content: dict[str, Any] | None, status: str
) -> None:
    cb = answering(action, content)
    async with Client(build_server(service), mode=mode, elicitation_callback=cb) as client:
        staged = await call(client, "stage_sched_params", {"changes": {"cgroup.batch.cpu_weight": 50}})
        assert staged["approval_required"]
        answer = await call(client, "request_approval", {"txid": staged["txid"]})
        assert answer["status"] == status and answer["via"] == "elicitation"
        result = await client.call_tool("apply", {"txid": staged["txid"]})
    assert len(cb.seen) == 1 and isinstance(cb.seen[0], ElicitRequestFormParams)
    assert "cgroup.batch.cpu_weight" in cb.seen[0].message
    shares = fake.read("sys/fs/cgroup/cpu/batch/cpu.shares").strip()
    if status == "granted":
        assert not result.is_error and shares == "512"
    else:
        assert (error := tool_error(result)) is not None and error.code == "approval_required"
        assert shares == "1024"


@pytest.mark.parametrize("mode", MODES)
async def test_without_elicitation_an_operator_in_another_process_grants_the_approval(
    service: Service, fake: FakeKernel, mode: str
) -> None:
    async with Client(build_server(service), mode=mode) as client:
        staged = await call(client, "stage_sched_params", {"changes": {"cgroup.batch.cpu_weight": 50}})
        pending = await call(client, "request_approval", {"txid": staged["txid"]})
        assert pending["status"] == "pending" and pending["via"] == "operator"
        early = await error_of(client, "apply", {"txid": staged["txid"]})
        assert early["code"] == "approval_required"
        cli = [sys.executable, "-m", "lumos_mcp", "--state-dir", str(service.state_dir)]
        listed = subprocess.run([*cli[:3], "approvals", *cli[3:], "list"], capture_output=True, text=True, timeout=60)
        assert pending["approval_id"] in listed.stdout, listed.stderr
        done = subprocess.run(
            [*cli[:3], "approvals", *cli[3:], "approve", pending["approval_id"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        applied = await call(client, "apply", {"txid": staged["txid"]})
        assert applied["state"] == "applied"
        again = await call(client, "stage_sched_params", {"changes": {"cgroup.batch.cpu_weight": 60}})
        reuse = await error_of(client, "apply", {"txid": again["txid"], "approval_id": pending["approval_id"]})
        assert reuse["code"] == "approval_invalid"  # bound to another digest, and used
    assert fake.read("sys/fs/cgroup/cpu/batch/cpu.shares").strip() == "512"


@pytest.mark.parametrize("mode", MODES)
async def test_observe_mode_refuses_every_write(
    make_service: Callable[..., Service], fake: FakeKernel, mode: str
) -> None:
    service = make_service(mode="observe", policy=POLICY)
    async with Client(build_server(service), mode=mode) as client:
        staged = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 10}})
        refused = await error_of(client, "apply", {"txid": staged["txid"]})
    assert refused["code"] == "mode_refused"
    assert fake.read("proc/sys/vm/swappiness").strip() == "60"


async def test_server_reverts_an_uncommitted_change_at_its_deadline(service: Service, fake: FakeKernel) -> None:
    async with Client(build_server(service)) as client:
        staged = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 20}, "confirm_within_s": 0.3})
        await call(client, "apply", {"txid": staged["txid"]})
        assert fake.read("proc/sys/vm/swappiness").strip() == "20"
        with anyio.fail_after(10):
            while fake.read("proc/sys/vm/swappiness").strip() != "60":
                await anyio.sleep(0.05)
        status = await call(client, "get_status")
    assert status["recent"][-1]["outcome"] == "deadline"
    assert any(r["event"] == "auto_revert" for r in iter_records(service.audit.path))


async def test_resources_and_prompt_are_served(service: Service) -> None:
    async with Client(build_server(service)) as client:
        uris = {r.uri for r in (await client.list_resources()).resources}
        assert {"lumos://catalog", "lumos://policy", "lumos://audit/tail"} <= uris
        catalog = await client.read_resource("lumos://catalog")
        assert "vm.swappiness" in catalog.contents[0].text  # type: ignore[union-attr]
        prompt = await client.get_prompt("tune-latency", {})
        assert "stage_sched_params" in prompt.messages[0].content.text  # type: ignore[union-attr]


async def test_every_decision_lands_in_a_verifiable_audit_log(service: Service) -> None:
    async with Client(build_server(service)) as client:
        staged = await call(client, "stage_sched_params", {"changes": {"vm.swappiness": 15}})
        await call(client, "apply", {"txid": staged["txid"]})
        await call(client, "commit", {"txid": staged["txid"]})
    events = [r["event"] for r in iter_records(service.audit.path)]
    assert events[0] == "recovery"
    assert [e for e in events if e in ("stage", "verdict", "apply", "commit")] == [
        "stage",
        "verdict",
        "apply",
        "commit",
    ]
    assert verify(service.audit.path).ok


async def test_get_status_shows_a_revert_the_audit_log_has_not_recorded_yet(
    make_service: Callable[..., Service], fake: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    service = make_service(policy=POLICY, clock=lambda: now[0])
    staged = service.stage({"vm.swappiness": 10}, confirm_within_s=5)
    service.apply(staged.tx.id)
    real_append = service.audit.append

    def append(event: str, **fields: Any) -> dict[str, Any]:
        if event == "auto_revert":
            raise AuditError("disk full", path=str(service.audit.path))
        return real_append(event, **fields)

    monkeypatch.setattr(service.audit, "append", append)
    now[0] += 10
    service.expire_due()
    assert fake.read("proc/sys/vm/swappiness").strip() == "60"  # reverting wins over recording
    async with Client(build_server(service)) as client:
        status = await call(client, "get_status")
    assert status["recording_problem"]["audit_records_waiting"] == 1
    assert status["journal_problem"] is not None
    assert status["deadline_loop_error"] is None and status["compaction_problem"] is None
