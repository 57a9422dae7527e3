"""Drift (issue 14 item 3): each committed knob against its live value (lost, changed) and against
what the host's sysctl.d files and active TuneD profile set at boot (clash, naming file and line);
in get_status, at server start, and from `lumos-mcp drift` (exit 1 on drift)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from mcp import Client

from lumos_mcp.audit import iter_records
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.persist.drift import DriftReport, detect
from lumos_mcp.server import build_server
from lumos_mcp.service import Service

POLICY = str(Path(__file__).parent / "data" / "persist-policy.toml")
SWAPPINESS = "proc/sys/vm/swappiness"


def commit(service: Service, change: dict[str, object]) -> str:
    return service.commit(service.apply(service.stage(change).tx.id).id).id


def found(service: Service, base: Path) -> DriftReport:
    return detect(service.committed(), service.backend, base)


def test_a_knob_back_at_its_value_before_the_first_commit_is_lost(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=POLICY)
    txid = commit(service, {"vm.swappiness": 10, "vm.dirty_ratio": 30})
    fake.root.write_text(SWAPPINESS, "60")  # a reboot: the kernel's default is back
    report = found(service, fake.base)
    assert [(d.knob, d.type, d.committed, d.live, d.tx) for d in report.drift] == [
        ("vm.swappiness", "lost", 10, 60, txid)
    ]
    assert report.checked == 2 and not report.clean


def test_a_knob_someone_else_wrote_is_changed_and_its_value_is_named(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=POLICY)
    commit(service, {"vm.swappiness": 10})
    fake.root.write_text(SWAPPINESS, "33")
    [drift] = found(service, fake.base).drift
    assert (drift.type, drift.live, drift.committed) == ("changed", 33, 10)


def test_a_knob_that_no_longer_exists_is_lost(make_service: Callable[..., Service], fake: FakeKernel) -> None:
    service = make_service(policy=POLICY)
    commit(service, {"cgroup.batch.cpu_weight": 50})
    shutil.rmtree(fake.base / "sys/fs/cgroup/cpu/batch")  # the cgroup was removed (and maybe made again later)
    [drift] = found(service, fake.base).drift
    assert (drift.knob, drift.type, drift.live) == ("cgroup.batch.cpu_weight", "lost", None)


def test_a_sysctl_d_file_that_sets_another_value_at_boot_clashes_naming_the_file_and_line(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=POLICY)
    commit(service, {"vm.swappiness": 10, "vm.dirty_ratio": 30})
    fake.file("usr/lib/sysctl.d/60-tuning.conf", "vm.dirty_ratio = 40\n")  # masked by /etc's file of that name
    fake.file("etc/sysctl.d/60-tuning.conf", "# local\n\n-vm/swappiness=30 \nvm.dirty_ratio = 30\n")
    [clash] = found(service, fake.base).drift
    assert (clash.knob, clash.type, clash.file, clash.line) == (
        "vm.swappiness",
        "clash",
        "/etc/sysctl.d/60-tuning.conf",
        3,
    )
    assert (clash.boot_value, clash.live, clash.profile) == ("30", 10, None)


def test_a_later_sysctl_d_file_that_sets_the_committed_value_wins_over_an_earlier_clash(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=POLICY)
    commit(service, {"vm.swappiness": 10})
    fake.file("etc/sysctl.d/60-tuning.conf", "vm.swappiness = 30\n")
    fake.file("etc/sysctl.d/99-zz-lumos-mcp.conf", "vm.swappiness = 10\n")  # the installed export
    assert found(service, fake.base).clean
    fake.file("etc/sysctl.conf", "vm.swappiness = 5\n")  # sysctl --system reads it last
    [clash] = found(service, fake.base).drift
    assert (clash.file, clash.line, clash.boot_value) == ("/etc/sysctl.conf", 1, "5")


def test_the_active_tuned_profile_clashes_naming_the_profile_and_the_included_file(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=POLICY)
    commit(service, {"vm.swappiness": 10, "thp.enabled": "never"})
    fake.file("etc/tuned/active_profile", "mine\n")
    fake.file("etc/tuned/mine/tuned.conf", "[main]\ninclude=base\n\n[vm]\ntransparent_hugepages=always\n")
    fake.file("usr/lib/tuned/base/tuned.conf", "[main]\nsummary=x\n[sysctl]\nvm.swappiness=30\nvm.dirty_ratio=5\n")
    clashes = {d.knob: d for d in found(service, fake.base).drift}
    assert set(clashes) == {"vm.swappiness", "thp.enabled"}
    swap, thp = clashes["vm.swappiness"], clashes["thp.enabled"]
    assert (swap.type, swap.profile, swap.file, swap.line) == ("clash", "mine", "/usr/lib/tuned/base/tuned.conf", 4)
    assert (thp.type, thp.profile, thp.file, thp.line, thp.boot_value) == (
        "clash",
        "mine",
        "/etc/tuned/mine/tuned.conf",
        5,
        "always",
    )


@pytest.mark.anyio
async def test_get_status_reports_drift_by_type(make_service: Callable[..., Service], fake: FakeKernel) -> None:
    service = make_service(policy=POLICY)
    commit(service, {"vm.swappiness": 10})
    async with Client(build_server(service)) as client:
        clean = (await client.call_tool("get_status", {})).structured_content
        fake.root.write_text(SWAPPINESS, "60")
        drifted = (await client.call_tool("get_status", {})).structured_content
    assert clean is not None and drifted is not None
    assert clean["drift"]["clean"] is True and clean["drift"]["checked"] == 1
    assert [(d["knob"], d["type"], d["live"]) for d in drifted["drift"]["drift"]] == [("vm.swappiness", "lost", 60)]


def test_a_server_that_starts_on_a_host_that_lost_its_committed_values_says_so_in_the_audit_log(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=POLICY)
    commit(service, {"vm.swappiness": 10})
    service.close()
    fake.root.write_text(SWAPPINESS, "60")  # rebooted
    restarted = make_service(policy=POLICY)
    assert restarted.drift_at_start is not None
    assert [(d.knob, d.type) for d in restarted.drift_at_start.drift] == [("vm.swappiness", "lost")]
    [event] = [r for r in iter_records(restarted.audit.path) if r["event"] == "drift"]
    assert event["drift"][0]["type"] == "lost" and event["mode"] == "live"


def test_drift_on_the_command_line_exits_1_on_drift_and_0_when_the_host_runs_what_was_committed(
    make_service: Callable[..., Service], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lumos_mcp.cli import main

    service = make_service(mode="sandbox", policy=POLICY)
    commit(service, {"vm.swappiness": 10})
    service.close()
    state = tmp_path / "state"
    args = ["drift", "--mode", "sandbox", "--state-dir", str(state), "--json"]
    assert main(args) == 0
    assert orjson.loads(capsys.readouterr().out)["clean"] is True
    (state / "sandbox" / SWAPPINESS).write_text("33\n")  # someone wrote the sandbox tree
    assert main(args) == 1
    [drift] = orjson.loads(capsys.readouterr().out)["drift"]
    assert (drift["type"], drift["live"]) == ("changed", 33)
