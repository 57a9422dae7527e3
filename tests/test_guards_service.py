"""Guards evaluated by the service: a fake clock and a fake metric source drive the samples;
a breach reverts through the deadline's journaled path and leaves its evidence everywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lumos_mcp.audit import iter_records
from lumos_mcp.errors import GuardLoosensError, GuardMetricMissingError, InvalidGuardError, TransactionStateError
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.service import Service
from lumos_mcp.txn import TxState

POLICY = """name = "guarded"
[global]
confirm_within_s = 120
[knobs."vm.swappiness"]
min = 0
max = 100
approval = "never"
[knobs."cgroup.*.cpu_shares"]
min = 2
max = 8192
approval = "never"
[speculation]
confirm_within_s = 30
[speculation.knobs."cgroup.*.cpu_shares"]
min = 2
max = 8192
[guards]
probation_s = {probation}
baseline_samples = 3
[[guards.rules]]
metric = "app.p99_ms.last"
ratio = 1.25
slack = 0.5
hold_samples = 2
"""


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class FakeSource:
    """Guard samples as data: one dict-shaped signature per second of the fake clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.items: list[tuple[float, dict[str, Any]]] = []

    def add(self, p99: float | None, psi: float | None = 1.0, step_s: float = 1.0) -> None:
        self.clock.now += step_s
        app = [] if p99 is None else [{"name": "p99_ms", "last": p99}]
        psi_data = None if psi is None else {"cpu": {"some": {"avg10_pct": psi}}}
        self.items.append((self.clock.now, {"app": app, "psi": psi_data}))

    def samples_after(self, t: float, limit: int = 64) -> list[tuple[float, Any]]:
        return [i for i in self.items if i[0] > t][-limit:]

    def recent(self, n: int) -> list[tuple[float, Any]]:
        return self.items[-n:]

    def unavailable(self) -> Mapping[str, str]:
        return {"app": "no application metric reported"} if not self.items or not self.items[-1][1]["app"] else {}


@pytest.fixture
def setup(make_service: Callable[..., Service], tmp_path: Path) -> Callable[..., tuple[Service, FakeSource, Clock]]:
    def build(probation: float = 0.0) -> tuple[Service, FakeSource, Clock]:
        policy = tmp_path / "guarded.toml"
        policy.write_text(POLICY.replace("{probation}", str(probation)))
        clock = Clock()
        service = make_service(policy=str(policy), clock=clock)
        source = FakeSource(clock)
        service.metrics = source
        for _ in range(3):
            source.add(4.0)
        return service, source, clock

    return build


def _swappiness(fake: FakeKernel) -> str:
    return (fake.base / "proc/sys/vm/swappiness").read_text().strip()


def test_a_breach_held_for_its_hold_reverts_at_once_with_evidence_in_status_audit_and_the_next_call(
    setup: Callable[..., tuple[Service, FakeSource, Clock]], fake: FakeKernel
) -> None:
    service, source, clock = setup()
    staged = service.stage({"vm.swappiness": 10})
    assert [g.metric for g in staged.guards] == ["app.p99_ms.last"]
    tx = service.apply(staged.tx.id)
    assert _swappiness(fake) == "10"
    source.add(5.0)  # limit 1.25 x 4 + 0.5 = 5.5: fine
    source.add(9.0)  # first breach
    assert service.check_guards() == []
    assert tx.state is TxState.APPLIED
    source.add(9.5)  # second: the hold is met
    clock.now += 0.25
    assert [t.id for t in service.check_guards()] == [tx.id]
    assert tx.state is TxState.REVERTED and _swappiness(fake) == "60"

    with pytest.raises(TransactionStateError) as e:
        service.commit(tx.id)
    evidence = e.value.fields["guard"]
    assert e.value.fields["reverted_by"] == "guard"
    assert evidence["baseline"] == 4.0 and evidence["limit"] == 5.5
    assert [s["value"] for s in evidence["samples"]] == [9.0, 9.5]
    assert evidence["reaction_s"] == pytest.approx(1.25)
    assert evidence["knobs"] == [{"knob": "vm.swappiness", "action": "restored", "detail": ""}]

    recent = next(t for t in service.status()["recent"] if t["txid"] == tx.id)
    assert recent["reverted_by"] == "guard" and recent["guard"]["limit"] == 5.5
    record = [r for r in iter_records(service.audit.path) if r.get("event") == "auto_revert"][-1]
    assert record["reason"] == "guard" and record["guard"]["samples"][0]["value"] == 9.0
    assert record["guard"]["reaction_s"] == pytest.approx(1.25)
    journal = (service.txns.journal_path).read_text()
    assert '"reason":"guard"' in journal


def test_a_guard_reverts_evidence_is_in_place_before_its_change_turns_reverted(
    setup: Callable[..., tuple[Service, FakeSource, Clock]],
) -> None:
    # The benchmark read the evidence as soon as it saw the state turn reverted, and found none
    # 8 times in 30 under load: the evidence was recorded after the state changed.
    service, source, _ = setup()
    tx = service.apply(service.stage({"vm.swappiness": 10}).tx.id)
    seen: dict[str, Any] = {}

    def probe(label: str) -> None:
        if label == "guard:after-revert":  # the last moment before the state turns reverted
            seen["evidence"] = service.guard_reverts.get(tx.id)

    service.txns.probe = probe
    source.add(9.0)
    source.add(9.0)
    assert [t.id for t in service.check_guards()] == [tx.id]
    assert seen["evidence"] is not None and [s["value"] for s in seen["evidence"]["samples"]] == [9.0, 9.0]
    assert service.guard_reverts[tx.id]["reaction_s"] >= 0  # the timings are added once the revert is done


def test_a_guard_that_holds_leaves_the_change_armed_until_its_commit(
    setup: Callable[..., tuple[Service, FakeSource, Clock]], fake: FakeKernel
) -> None:
    service, source, _ = setup()
    tx = service.apply(service.stage({"vm.swappiness": 10}).tx.id)
    for value in (5.0, 9.0, 5.0, 9.0, None, 5.0, 9.0, 5.0):  # never two breaching samples without a calm one between
        source.add(value)
        assert service.check_guards() == []
    armed = service.status()["armed"][0]
    assert armed["guards"] and armed["reverted_by"] is None
    assert service.commit(tx.id).state is TxState.COMMITTED
    source.add(50.0)
    source.add(50.0)
    assert service.check_guards() == [] and _swappiness(fake) == "10"


def test_a_per_change_guard_may_tighten_but_never_loosen_the_policys(
    setup: Callable[..., tuple[Service, FakeSource, Clock]],
) -> None:
    service, source, _ = setup()
    with pytest.raises(GuardLoosensError) as e:
        service.stage({"vm.swappiness": 10}, guards=[{"metric": "app.p99_ms.last", "ratio": 2.0}])
    assert e.value.code == "guard_loosens" and e.value.fields["field"] == "limit"
    staged = service.stage(
        {"vm.swappiness": 10},
        guards=[
            {"metric": "app.p99_ms.last", "ratio": 1.1, "hold_samples": 1},
            {"metric": "psi.cpu.some.avg10_pct", "value": 20},
        ],
    )
    tx = service.apply(staged.tx.id)
    source.add(5.0)  # above 1.1 x 4 + 0.5 (the policy's slack, left unset) = 4.9; one sample is the hold
    assert [t.id for t in service.check_guards()] == [tx.id]


def test_a_guard_whose_metric_is_missing_is_refused_at_stage_not_watched_as_a_pass(
    setup: Callable[..., tuple[Service, FakeSource, Clock]],
) -> None:
    service, source, _ = setup()
    source.add(None)  # no app metric reported in the latest sample
    with pytest.raises(GuardMetricMissingError) as e:
        service.stage({"vm.swappiness": 10})
    assert e.value.code == "guard_metric_missing" and e.value.fields["metric"] == "app.p99_ms.last"
    assert e.value.fields["unavailable"] == {"app": "no application metric reported"}
    source.add(4.0, psi=None)
    with pytest.raises(GuardMetricMissingError):
        service.stage({"vm.swappiness": 10}, guards=[{"metric": "psi.cpu.some.avg10_pct", "value": 5}])


@pytest.mark.parametrize(
    ("guard", "field"),
    [
        ({"metric": "app.p99_ms.lastt", "value": 1}, "metric"),
        ({"metric": "app.p99_ms.last"}, ""),
        ({"metric": "app.p99_ms.last", "value": 1, "knobs": ["vm.*"]}, "knobs"),
        ({"metric": "app.p99_ms.last", "value": 1, "hold_samples": "x"}, "hold_samples"),
    ],
)
def test_a_malformed_per_change_guard_is_a_typed_error_naming_its_field(
    setup: Callable[..., tuple[Service, FakeSource, Clock]], guard: dict[str, Any], field: str
) -> None:
    service, _, _ = setup()
    with pytest.raises(InvalidGuardError) as e:
        service.stage({"vm.swappiness": 10}, guards=[guard])
    assert e.value.code == "invalid_guard" and e.value.fields["index"] == 0 and e.value.fields["field"] == field


def test_speculative_moves_obey_the_same_guards(
    setup: Callable[..., tuple[Service, FakeSource, Clock]], fake: FakeKernel
) -> None:
    service, source, _ = setup()
    staged = service.stage({"cgroup.batch.cpu_shares": 2048}, speculative=True, actor="speculator")
    assert staged.guards and staged.verdict.allowed
    tx = service.apply(staged.tx.id, actor="speculator")
    source.add(20.0)
    source.add(20.0)
    assert [t.id for t in service.check_guards()] == [tx.id]
    assert (fake.base / "sys/fs/cgroup/cpu/batch/cpu.shares").read_text().strip() == "1024"


def test_a_commit_on_probation_is_recorded_only_after_it_and_a_breach_meanwhile_reverts(
    setup: Callable[..., tuple[Service, FakeSource, Clock]], fake: FakeKernel
) -> None:
    service, source, clock = setup(probation=10.0)
    kept = service.apply(service.stage({"vm.swappiness": 10}).tx.id)
    assert service.commit(kept.id).state is TxState.APPLIED  # on probation
    assert service.status()["armed"][0]["probation_ends_in_s"] == pytest.approx(10.0)
    for _ in range(10):
        source.add(5.0)
        service._tick()
    assert kept.state is TxState.COMMITTED and _swappiness(fake) == "10"
    assert [r["event"] for r in iter_records(service.audit.path)][-2:] == ["commit_requested", "commit"]

    hurt = service.apply(service.stage({"vm.swappiness": 20}).tx.id)
    service.commit(hurt.id)
    source.add(30.0)
    source.add(30.0)
    clock.now += 0.1
    service._tick()
    assert hurt.state is TxState.REVERTED and _swappiness(fake) == "10"
    with pytest.raises(TransactionStateError) as e:
        service.revert(hurt.id)
    assert e.value.fields["reverted_by"] == "guard"


@pytest.mark.anyio
async def test_through_mcp_a_guarded_change_that_hurts_is_reverted_and_every_view_says_so(
    setup: Callable[..., tuple[Service, FakeSource, Clock]], fake: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    import anyio
    import orjson
    from mcp import Client

    from lumos_mcp.api import tool_error
    from lumos_mcp.cli import main
    from lumos_mcp.server import build_server

    service, source, _ = setup()
    async with Client(build_server(service)) as client:
        guards = await client.read_resource("lumos://policy/guards")
        rules = orjson.loads(guards.contents[0].text)["rules"]  # type: ignore[union-attr]
        assert [r["metric"] for r in rules] == ["app.p99_ms.last"]
        loose = await client.call_tool(
            "stage_sched_params",
            {"changes": {"vm.swappiness": 10}, "guards": [{"metric": "app.p99_ms.last", "ratio": 3}]},
        )
        error = tool_error(loose)
        assert error is not None and error.code == "guard_loosens"
        staged = await client.call_tool(
            "stage_sched_params",
            {"changes": {"vm.swappiness": 10}, "guards": [{"metric": "app.p99_ms.last", "ratio": 1.1}]},
        )
        assert staged.structured_content is not None
        txid = staged.structured_content["txid"]
        assert staged.structured_content["guards"] == [
            "app.p99_ms.last <= 1.1 x baseline + 0.5 (trips after 2 samples)"
        ]
        await client.call_tool("apply", {"txid": txid})
        for _ in range(3):
            source.add(9.0)
        with anyio.fail_after(10):
            while _swappiness(fake) != "60":
                await anyio.sleep(0.05)
        answer = tool_error(await client.call_tool("commit", {"txid": txid}))
        assert answer is not None and answer.code == "invalid_state"
        assert answer.fields["reverted_by"] == "guard" and answer.fields["guard"]["baseline"] == 4.0
        status = (await client.call_tool("get_status", {})).structured_content
        assert status is not None
        recent = next(t for t in status["recent"] if t["txid"] == txid)
        assert recent["reverted_by"] == "guard" and len(recent["guard"]["samples"]) == 2
    capsys.readouterr()
    assert main(["status", "--state-dir", str(service.state_dir), "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)["guard_reverts"]
    assert [(g["tx"], g["values"]) for g in shown] == [(txid, [9.0, 9.0])]


@pytest.mark.anyio
async def test_the_expert_agent_guards_each_change_on_its_objective_and_reports_a_guard_revert(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    from mcp import Client

    from lumos_mcp.agents.expert import ExpertAgent, approval_callback
    from lumos_mcp.server import build_server

    clock = Clock()
    service = make_service(policy=str(Path(__file__).parent / "data" / "policy-test.toml"), clock=clock)
    source = FakeSource(clock)
    service.metrics = source
    for _ in range(3):
        source.add(None, psi=1.0)

    class Hurting(ExpertAgent):
        """Measures scripted windows; while the change is applied, CPU pressure jumps."""

        windows: ClassVar[list[list[float]]] = [[4.8, 4.9, 5.0], [4.0, 4.1, 4.2]]

        async def measure(self, label: str) -> tuple[list[float], dict[str, Any] | None]:
            if label == "after":
                for _ in range(3):
                    source.add(None, psi=40.0)  # above 1.5 x 1 + 5 for the agent's 3-sample hold
                service.check_guards()
            return self.windows.pop(0), {"psi": {"cpu": {"some": {"avg10_pct": 1.0}}}}

    async with Client(build_server(service), elicitation_callback=approval_callback("sandbox")) as client:
        [log] = await Hurting(client, 0.1, lambda _: None, use_ranker=False).run(1)
    stage = next(r for r in iter_records(service.audit.path) if r.get("event") == "stage")
    assert stage["guards"] == ["psi.cpu.some.avg10_pct <= 1.5 x baseline + 5 (trips after 3 samples)"]
    assert log.outcome == "reverted by a guard" and "40.0" in log.why
    assert service.txns.get(log.txid or "").outcome == "guard"
    assert _swappiness(fake) == "60"
