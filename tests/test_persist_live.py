"""Live (root): commit vm.swappiness on this host, "reboot" by writing its old value back behind
lumos-mcp's back, see drift report it lost, re-apply it through the ordinary path, and restore the
host's own value in ``finally`` whatever happens. Touches vm.swappiness only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.persist.drift import detect
from lumos_mcp.persist.reapply import reapply
from lumos_mcp.service import Service, ServiceConfig

POLICY = Path(__file__).parent / "data" / "persist-policy.toml"
SWAPPINESS = "proc/sys/vm/swappiness"


@pytest.mark.live
def test_a_committed_swappiness_lost_behind_lumos_mcps_back_is_reported_lost_and_reapplied(tmp_path: Path) -> None:
    host = KernelRoot("/")
    if os.geteuid() != 0 or not os.access(host.path(SWAPPINESS), os.W_OK):
        pytest.skip("live tests need root and a writable vm.swappiness")
    original = host.read_text(SWAPPINESS).strip()
    target = int(original) - 1 if int(original) > 0 else 1
    service = Service(
        ServiceConfig(mode="live", state_dir=tmp_path / "state", policy=POLICY, perf=False, telemetry_root=Path("/"))
    )
    try:
        service.start()
        tx = service.commit(service.apply(service.stage({"vm.swappiness": target}).tx.id).id)
        assert host.read_text(SWAPPINESS).strip() == str(target)
        host.write_text(SWAPPINESS, original)  # the reboot: the host's value is back
        lost = [d for d in detect(service.committed(), service.backend, Path("/")).drift if d.type != "clash"]
        assert [(d.knob, d.type, d.live, d.tx) for d in lost] == [("vm.swappiness", "lost", int(original), tx.id)]
        report = reapply(service)
        assert [(k.knob, k.outcome) for k in report.knobs] == [("vm.swappiness", "reapplied")]
        assert host.read_text(SWAPPINESS).strip() == str(target)
        assert [d for d in service.status()["drift"]["drift"] if d["type"] != "clash"] == []
    finally:
        service.close()
        host.write_text(SWAPPINESS, original)
    assert host.read_text(SWAPPINESS).strip() == original
