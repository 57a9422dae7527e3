"""Export of the committed state (issue 14 item 2): sysctl.d, TuneD, JSON and the rollback script,
round trips on a fake tree, every TuneD profile loaded by TuneD's own loader, and the MCP tool."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel, typical_host
from lumos_mcp.kernelfs.names import sysctl_file
from lumos_mcp.knobs import default_catalog
from lumos_mcp.persist import export, hostconf
from lumos_mcp.persist.reapply import reapply
from lumos_mcp.persist.state import CommittedKnob
from lumos_mcp.server import build_server
from lumos_mcp.service import Service

POLICY = str(Path(__file__).parent / "data" / "persist-policy.toml")
SYSTEM_PYTHON = Path("/usr/bin/python3")
TUNED_LOAD = Path(__file__).parent / "tuned_load.py"
NOW = 1796000000.0
CHANGE: dict[str, object] = {
    "vm.swappiness": 10,
    "vm.dirty_ratio": 30,
    "block.vda.read_ahead_kb": 256,
    "cgroup.batch.cpu_weight": 50,
}
ORIGINAL: dict[str, object] = {
    "vm.swappiness": 60,
    "vm.dirty_ratio": 20,
    "block.vda.read_ahead_kb": 128,
    "cgroup.batch.cpu_weight": 100,
}


def commit(service: Service, change: dict[str, object]) -> str:
    return service.commit(service.apply(service.stage(change).tx.id).id).id


def live(service: Service) -> dict[str, object]:
    return {k: service.backend.read(k).value for k in CHANGE}


def test_export_round_trips_rollback_then_sysctl_d_and_reapply_bring_back_the_committed_state(
    make_service: Callable[..., Service], fake: FakeKernel, tmp_path: Path
) -> None:
    service = make_service(policy=POLICY)
    txid = commit(service, CHANGE)
    knobs = service.committed()
    drop_in = export.render("sysctl.d", knobs, service.backend, "live", NOW)
    rollback = export.render("shell", knobs, service.backend, "live", NOW)
    assert rollback.not_carried == []
    script = tmp_path / "rollback.sh"
    script.write_text(rollback.files["lumos-mcp-rollback.sh"])
    subprocess.run(["sh", str(script)], check=True, env={**os.environ, "LUMOS_ROOT": str(fake.base)}, timeout=30)
    assert live(service) == ORIGINAL  # the "wiped to defaults" host
    [(name, text)] = drop_in.files.items()
    settings_ = hostconf.parse_sysctl_conf(text, name)
    assert {s.key: s.value for s in settings_} == {"vm.swappiness": "10", "vm.dirty_ratio": "30"}
    assert {n.knob for n in drop_in.not_carried} == {"block.vda.read_ahead_kb", "cgroup.batch.cpu_weight"}
    assert all(f"{txid}, committed" in text for _ in settings_)
    for s in settings_:  # what systemd-sysctl does at boot
        fake.root.write_text(sysctl_file(s.key), s.value)
    report = reapply(service)  # the rest, through the ordinary path
    assert {k.knob: k.outcome for k in report.knobs} == {
        "vm.swappiness": "in_place",
        "vm.dirty_ratio": "in_place",
        "block.vda.read_ahead_kb": "reapplied",
        "cgroup.batch.cpu_weight": "reapplied",
    }
    assert live(service) == CHANGE
    assert {k.knob: k.value for k in service.committed()} == CHANGE


def test_the_sysctl_d_drop_in_sorts_after_the_distributions_files_and_lists_what_it_leaves_out(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy=POLICY)
    commit(service, {"vm.swappiness": 10, "thp.enabled": "never"})
    out = export.render("sysctl.d", service.committed(), service.backend, "live", NOW)
    [(name, text)] = out.files.items()
    debian_and_systemd = ["10-console-messages.conf", "50-default.conf", "50-pid-max.conf", "99-sysctl.conf"]
    assert sorted([name, *debian_and_systemd])[-1] == name
    assert [n.knob for n in out.not_carried] == ["thp.enabled"]
    assert "#   thp.enabled: a sysfs file, not a sysctl" in text
    assert "vm.swappiness = 10" in text.splitlines()


def test_the_rollback_script_writes_each_original_file_text_or_value_and_skips_knobs_it_does_not_know(
    backend: Backend,
) -> None:
    thp = CommittedKnob(
        "thp.enabled", "never", "tx-1", NOW, ("sys/kernel/mm/transparent_hugepage/enabled",), "plain",
        "madvise", ("madvise",), "tx-1", NOW,
    )  # fmt: skip
    from_audit = CommittedKnob(
        "vm.swappiness", 10, "tx-2", NOW, ("proc/sys/vm/swappiness",), "plain", 5, None, "x", NOW
    )
    unknown = CommittedKnob(
        "vm.dirty_ratio", 30, "tx-3", NOW, ("proc/sys/vm/dirty_ratio",), "plain", None, None, "y", NOW
    )
    out = export.render("shell", [thp, from_audit, unknown], backend, "live", NOW)
    writes = [line for line in out.files["lumos-mcp-rollback.sh"].splitlines() if line.startswith("printf")]
    assert writes == [
        "printf '%s\\n' madvise > \"$root\"/sys/kernel/mm/transparent_hugepage/enabled",
        "printf '%s\\n' 5 > \"$root\"/proc/sys/vm/swappiness",
    ]
    assert [n.knob for n in out.not_carried] == ["vm.dirty_ratio"]


def test_the_json_export_holds_every_committed_knob_with_its_transaction_and_time(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy=POLICY)
    txid = commit(service, {"vm.swappiness": 10, "thp.enabled": "never"})
    out = export.render("json", service.committed(), service.backend, "live", NOW)
    body = orjson.loads(out.files["lumos-mcp-committed.json"])
    assert out.not_carried == []
    assert {k["knob"]: (k["value"], k["tx"], k["original"]) for k in body["knobs"]} == {
        "thp.enabled": ("never", txid, "madvise"),
        "vm.swappiness": (10, txid, 60),
    }


# --------------------------------------------------------------------------- TuneD
def tuned_loader() -> None:
    """Skip when TuneD is not installed, except in CI (.ci/run installs the Debian package `tuned`)."""
    found = (
        SYSTEM_PYTHON.is_file()
        and subprocess.run([str(SYSTEM_PYTHON), "-c", "import tuned.profiles"], capture_output=True).returncode == 0
    )
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but TuneD's Python package is missing: apt-get install tuned")
        pytest.skip("TuneD is not installed (apt-get install tuned)")


def write_profile(out: export.Export, tmp: Path) -> None:
    for name, text in out.files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)


def load_profile(out: export.Export, tmp: Path) -> dict[str, Any]:
    write_profile(out, tmp)
    run = subprocess.run(
        [str(SYSTEM_PYTHON), str(TUNED_LOAD), str(tmp), export.TUNED_PROFILE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
    )
    result: dict[str, Any] = orjson.loads(run.stdout)
    assert run.returncode == 0, result
    return result


@pytest.fixture(scope="module")
def tuned() -> Iterator[Callable[[export.Export, Path], dict[str, Any]]]:
    """One TuneD loader process for many profiles (an interpreter start per profile is most of the cost)."""
    tuned_loader()
    with subprocess.Popen(
        [str(SYSTEM_PYTHON), str(TUNED_LOAD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:  # leaving the block closes its pipes (it exits at end of input) and waits for it
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def load(out: export.Export, tmp: Path) -> dict[str, Any]:
            write_profile(out, tmp)
            stdin.write(f"{tmp} {export.TUNED_PROFILE}\n")
            stdin.flush()
            result: dict[str, Any] = orjson.loads(stdout.readline())
            assert "error" not in result, result
            return result

        yield load


def unit_options(loaded: dict[str, Any], kind: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for unit in loaded["units"].values():
        if unit["type"] == kind:
            out.update(unit["options"])
    return out


TUNABLE = {  # knob -> values it may take, on the fake reference host
    "vm.swappiness": st.integers(0, 200),
    "vm.dirty_ratio": st.integers(0, 100),
    "kernel.sched_rr_timeslice_ms": st.integers(1, 10000),
    "kernel.sched_autogroup_enabled": st.booleans(),
    "net.core.somaxconn": st.integers(1, 65535),
    "thp.enabled": st.sampled_from(["always", "madvise", "never"]),
    "thp.defrag": st.sampled_from(["always", "defer", "madvise", "never"]),
    "block.vda.scheduler": st.sampled_from(["mq-deadline", "none"]),
    "block.vda.read_ahead_kb": st.integers(0, 65536),
    "block.vda.nr_requests": st.integers(4, 65536),
    "sched.nr_migrate": st.integers(1, 4096),
    "sched.base_slice_ns": st.integers(100000, 100000000),
    "cgroup.batch.cpu_weight": st.integers(1, 10000),
}


with tempfile.TemporaryDirectory() as _tmp:  # where each knob lives on the fake reference host
    _host = Backend(typical_host(Path(_tmp)).root, default_catalog())
    RESOLVED = {knob: _host.resolve(knob) for knob in TUNABLE}
BACKEND = _host  # its tree is gone: exporting reads only the catalog


@st.composite
def committed_states(draw: st.DrawFn) -> list[CommittedKnob]:
    chosen = draw(st.lists(st.sampled_from(sorted(TUNABLE)), unique=True, max_size=len(TUNABLE)))
    out = []
    for knob in sorted(chosen):
        res = RESOLVED[knob]
        value = draw(TUNABLE[knob])
        tx = "tx-" + draw(st.text("0123456789abcdef", min_size=8, max_size=8))
        out.append(CommittedKnob(knob, value, tx, NOW, res.files, res.codec, None, None, tx, NOW))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(knobs=committed_states(), include=st.sampled_from([(), ("virtual-guest",), ("latency-performance",)]))
def test_tuneds_own_loader_accepts_every_exported_profile_and_every_option_is_one_its_plugins_know(
    tuned: Callable[[export.Export, Path], dict[str, Any]], knobs: list[CommittedKnob], include: tuple[str, ...]
) -> None:
    out = export.render("tuned", knobs, BACKEND, "live", NOW, include)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = tuned(out, Path(tmp))
    assert loaded["unknown"] == []
    sysctl = unit_options(loaded, "sysctl")
    for knob in knobs:
        if knob.files[0].startswith("proc/sys/"):  # ours win over what an included profile sets
            assert sysctl[knob.knob] == str(int(knob.value) if isinstance(knob.value, bool) else knob.value)
    left_out = {n.knob for n in out.not_carried}
    assert left_out == {k.knob for k in knobs} & {"sched.base_slice_ns", "cgroup.batch.cpu_weight"}


def test_the_tuned_profile_includes_the_active_profile_and_puts_thp_and_disks_in_their_plugins(
    make_service: Callable[..., Service], fake: FakeKernel, tmp_path: Path
) -> None:
    tuned_loader()
    fake.file("etc/tuned/active_profile", "virtual-guest")
    service = make_service(policy=POLICY)
    commit(service, {"vm.swappiness": 10, "thp.enabled": "never", "block.vda.scheduler": "none"})
    out = export.render("tuned", service.committed(), service.backend, "live", NOW, hostconf.active_profile(fake.base))
    assert "include=virtual-guest" in out.files["lumos-mcp/tuned.conf"].splitlines()
    loaded = load_profile(out, tmp_path / "profiles")
    assert unit_options(loaded, "sysctl")["vm.swappiness"] == "10"
    assert loaded["units"]["vm"]["options"]["transparent_hugepages"] == "never"
    assert loaded["units"]["disk_vda"] == {"type": "disk", "devices": "vda", "options": {"elevator": "none"}}
    assert "vm.dirty_ratio" in unit_options(loaded, "sysctl")  # from virtual-guest, included


@pytest.mark.anyio
async def test_the_export_tool_shows_what_would_persist_and_writes_nothing(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=POLICY)
    txid = commit(service, {"vm.swappiness": 10, "thp.enabled": "never"})
    before = sorted(p.name for p in service.state_dir.iterdir())
    async with Client(build_server(service)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("export_committed", {"format": "sysctl.d"})
    assert tools["export_committed"].annotations is not None
    assert tools["export_committed"].annotations.read_only_hint is True
    data = result.structured_content
    assert not result.is_error and data is not None
    assert [(k["knob"], k["tx"]) for k in data["committed"]] == [("thp.enabled", txid), ("vm.swappiness", txid)]
    assert data["files"][0]["name"] == export.SYSCTL_D_NAME
    assert data["not_carried"] == [{"knob": "thp.enabled", "reason": "a sysfs file, not a sysctl"}]
    assert sorted(p.name for p in service.state_dir.iterdir()) == before


def test_export_on_the_command_line_writes_the_drop_in_and_names_what_it_leaves_out(
    make_service: Callable[..., Service], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lumos_mcp.cli import main

    service = make_service(mode="sandbox", policy=POLICY)
    commit(service, {"vm.swappiness": 10, "thp.enabled": "never"})
    service.close()
    state = str(tmp_path / "state")
    out = tmp_path / "etc-sysctl.d"
    assert main(["export", "--format", "sysctl.d", "--mode", "sandbox", "--state-dir", state, "--out", str(out)]) == 0
    assert "vm.swappiness = 10" in (out / export.SYSCTL_D_NAME).read_text().splitlines()
    assert "not carried by sysctl.d: thp.enabled" in capsys.readouterr().err
    assert main(["export", "--format", "json", "--mode", "sandbox", "--state-dir", state]) == 0
    assert [k["knob"] for k in orjson.loads(capsys.readouterr().out)["knobs"]] == ["thp.enabled", "vm.swappiness"]
    shutil.rmtree(out)


@pytest.mark.parametrize("fmt", ["sysctl.d", "tuned", "shell"])
def test_a_task_knob_is_left_to_reapply_by_every_file_format_and_named_as_such(backend: Backend, fmt: str) -> None:
    task = CommittedKnob(
        "task.cgroup:batch.nice", 5, "tx-1", NOW, ("task/cgroup:batch/nice",), "task",
        0, ("0",), "tx-1", NOW,
    )  # fmt: skip
    out = export.render(fmt, [task], backend, "live", NOW)  # type: ignore[arg-type]
    assert [(n.knob, n.reason) for n in out.not_carried] == [("task.cgroup:batch.nice", export.TASKS_NOT_CARRIED)]
    assert not any("task/cgroup:batch" in line for text in out.files.values() for line in text.splitlines()
                   if not line.startswith("#"))  # fmt: skip
