"""Live: a guard on the real sampler reverts a real cgroup knob of a cgroup the test made."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from lumos_mcp.audit import iter_records
from lumos_mcp.kernelfs.cgroups import CgroupManager
from lumos_mcp.kernelfs.root import KernelRoot
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.txn import TxState

pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/cpu"), reason="needs root and cgroup v1"),
]

POLICY = """name = "live-guard"
[knobs."cgroup.*.cpu_shares"]
min = 2
max = 8192
approval = "never"
[guards]
baseline_samples = 3
[[guards.rules]]
metric = "app.p99_ms.last"
ratio = 1.25
hold_samples = 2
"""


async def test_live_a_breaching_app_metric_reverts_a_cgroups_shares_through_the_sampler(tmp_path: Path) -> None:
    root = KernelRoot("/")
    cgroups = CgroupManager(root)
    name = f"lumos-guard-test-{os.getpid()}"
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    service: Service | None = None
    try:
        cgroups.create(name)
        shares = cgroups.rel(name, "cpu.shares")
        original = root.read_text(shares).strip()
        service = Service(
            ServiceConfig(
                mode="live",
                state_dir=tmp_path / "state",
                policy=policy,
                cgroups=(name,),
                perf=False,
                telemetry_interval_s=0.2,
            )
        )
        service.start()
        p99 = [4.0]

        async def report() -> None:
            assert service is not None
            while True:
                service.telemetry.report_app_metric("p99_ms", p99[0], "ms")
                await anyio.sleep(0.05)

        async with service.telemetry.running(), anyio.create_task_group() as tg:
            tg.start_soon(service.run_deadlines)
            tg.start_soon(report)
            with anyio.fail_after(30):
                while len(service.telemetry.sampler.samples()) < 5:
                    await anyio.sleep(0.05)
                staged = service.stage({f"cgroup.{name}.cpu_shares": 4096})
                tx = service.apply(staged.tx.id)
                assert root.read_text(shares).strip() == "4096"
                p99[0] = 40.0
                while tx.state is TxState.APPLIED:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert tx.state is TxState.REVERTED and root.read_text(shares).strip() == original
        evidence = service.guard_reverts[tx.id]
        assert evidence["baseline"] == 4.0 and [s["value"] for s in evidence["samples"]] == [40.0, 40.0]
        record = [r for r in iter_records(service.audit.path) if r.get("event") == "auto_revert"][-1]
        assert record["reason"] == "guard" and record["knobs"][0]["action"] == "restored"
    finally:
        if service is not None:
            service.shutdown()
            service.close()
        cgroups.remove(name)
