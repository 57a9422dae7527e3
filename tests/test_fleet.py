"""The Ansible collection lumos.tuning and its canary playbook against a simulated fleet: eight
lumos-mcp servers on this machine, each in sandbox mode with its own state directory and its own
127.0.0.1 port (benchmarks/fleet_sim.py). One fleet is shared by every test in this file; each
test reads the values it starts from and picks a target that differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.fleet_sim import COLLECTIONS, PROBE_TASKS, Fleet, Host, kill_controller, touched

pytestmark = pytest.mark.slow

MODULES = COLLECTIONS / "ansible_collections" / "lumos" / "tuning" / "plugins" / "modules"
SWAPPINESS = "vm.swappiness"
CACHE_PRESSURE = "vm.vfs_cache_pressure"
APP_WINDOW_S = 30
QUICK = {
    "lumos_measure_s": 1,
    "lumos_app_window_s": APP_WINDOW_S,
    "lumos_app_metric": "app.p99_ms",
    "lumos_measure_tasks": str(PROBE_TASKS),
    "lumos_confirm_within_s": 120,
}
"""A one-second measuring window, with the simulated app probe and its metric checked. The app
metric is read over the last 30 s: on this loaded machine starting a module took up to 10 s, so
a shorter window could miss the probe's report made two tasks earlier."""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("fleet"), 8)
    try:
        f.start()
        f.wait_for_telemetry(APP_WINDOW_S)  # else the first read waits for a fresh window, which the report precedes
        yield f
    finally:
        f.stop()


def values(fleet: Fleet, knob: str) -> list[Any]:
    return [fleet.value(h, knob) for h in fleet.hosts]


def other_than(current: list[Any], candidates: list[int]) -> int:
    return next(c for c in candidates if c not in current)


def wave_sizes(stdout: str, task: str) -> list[int]:
    """How many hosts each run of ``task`` changed, in order (one run per wave)."""
    runs = [chunk for chunk in stdout.split("TASK [")[1:] if chunk.startswith(task + "]")]
    return [chunk.count("changed: [") for chunk in runs]


def run_module(fleet: Fleet, host: Host, module: str, args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """Run one module of the collection as Ansible runs it on a managed host: a Python process
    given its arguments in a file, printing its result as JSON."""
    argfile = fleet.root / f"args-{module}.json"
    params = {"url": host.url, "token": fleet.token, **args, "_ansible_check_mode": check, "_ansible_diff": True}
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    out = subprocess.run(
        [sys.executable, str(MODULES / f"{module}.py"), str(argfile)],
        env={**os.environ, "PYTHONPATH": str(COLLECTIONS)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# ------------------------------------------------------------------ the modules
def test_apply_in_check_mode_stages_only_and_returns_the_verdict_and_the_diff(fleet: Fleet) -> None:
    host = fleet.hosts[-1]
    before = fleet.value(host, SWAPPINESS)
    target = other_than([before], [41, 42])
    out = run_module(fleet, host, "apply", {"changes": {SWAPPINESS: target}}, check=True)
    assert (out["changed"], out["state"], out["allowed"], out["denials"]) == (True, "staged", True, [])
    assert out["diff"] == {"before": f"{SWAPPINESS} = {before}\n", "after": f"{SWAPPINESS} = {target}\n"}
    assert fleet.value(host, SWAPPINESS) == before
    assert touched(fleet.transactions(host), SWAPPINESS, target) == []


def test_apply_then_commit_is_changed_once_and_a_second_commit_or_apply_reports_unchanged(fleet: Fleet) -> None:
    host = fleet.hosts[-1]
    target = other_than([fleet.value(host, SWAPPINESS)], [43, 44])
    applied = run_module(fleet, host, "apply", {"changes": {SWAPPINESS: target}, "confirm_within_s": 120})
    assert (applied["changed"], applied["state"], applied["values"]) == (True, "applied", {SWAPPINESS: target})
    assert 0 < applied["deadline_in_s"] <= 120
    first = run_module(fleet, host, "commit", {"txid": applied["txid"]})
    second = run_module(fleet, host, "commit", {"txid": applied["txid"]})
    again = run_module(fleet, host, "apply", {"changes": {SWAPPINESS: target}})
    assert (first["changed"], first["state"]) == (True, "committed")
    assert (second["changed"], second["state"]) == (False, "committed")
    assert (again["changed"], again["state"], again["txid"]) == (False, "unchanged", None)


def test_revert_restores_the_original_and_a_second_revert_reports_unchanged(fleet: Fleet) -> None:
    host = fleet.hosts[-1]
    before = fleet.value(host, SWAPPINESS)
    target = other_than([before], [45, 46])
    applied = run_module(fleet, host, "apply", {"changes": {SWAPPINESS: target}})
    first = run_module(fleet, host, "revert", {"txid": applied["txid"]})
    second = run_module(fleet, host, "revert", {"txid": applied["txid"]})
    assert (first["changed"], first["state"]) == (True, "reverted")
    assert (second["changed"], second["state"]) == (False, "reverted")
    assert fleet.value(host, SWAPPINESS) == before


def test_export_writes_the_committed_sysctls_once_and_changes_nothing_in_check_mode(fleet: Fleet) -> None:
    host = fleet.hosts[-1]
    target = other_than([fleet.value(host, SWAPPINESS)], [51, 52])  # values no other test of this file uses
    applied = run_module(fleet, host, "apply", {"changes": {SWAPPINESS: target}})
    run_module(fleet, host, "commit", {"txid": applied["txid"]})
    dest = fleet.root / f"sysctl.d-{target}"
    checked = run_module(fleet, host, "export", {"format": "sysctl.d", "dest": str(dest)}, check=True)
    assert checked["changed"] is True and not dest.exists()
    first = run_module(fleet, host, "export", {"format": "sysctl.d", "dest": str(dest)})
    second = run_module(fleet, host, "export", {"format": "sysctl.d", "dest": str(dest)})
    [written] = first["written"]
    assert (first["changed"], second["changed"], second["written"]) == (True, False, [])
    assert f"{SWAPPINESS} = {target}" in Path(written).read_text().splitlines()
    assert {k["knob"]: k["value"] for k in first["committed"]}[SWAPPINESS] == target


def test_a_denied_change_fails_with_policy_denied_and_names_each_denial(fleet: Fleet) -> None:
    host = fleet.hosts[-1]
    out = run_module(fleet, host, "apply", {"changes": {SWAPPINESS: 0}})
    assert (out["failed"], out["code"], out["allowed"]) == (True, "policy_denied", False)
    assert [(d["rule"], d["knob"], d["limit"]) for d in out["denials"]] == [("below_min", SWAPPINESS, 1)]


def test_a_module_fails_with_the_servers_typed_code_and_fields(fleet: Fleet) -> None:
    host = fleet.hosts[-1]
    out = run_module(fleet, host, "commit", {"txid": "tx-00000000"})
    assert (out["failed"], out["code"], out["fields"]["txid"]) == (True, "unknown_transaction", "tx-00000000")


def test_a_wrong_token_fails_as_unauthorized_and_a_dead_port_as_unreachable(fleet: Fleet) -> None:
    host = fleet.hosts[-1]
    wrong = run_module(fleet, host, "facts", {"token": "not-the-token-0123456789"})
    dead = run_module(fleet, Host("gone", 9, host.state_dir), "facts", {})
    assert (wrong["failed"], wrong["code"], wrong["fields"]["status"]) == (True, "unauthorized", 401)
    assert (dead["failed"], dead["code"]) == (True, "unreachable")


def test_facts_sets_the_servers_status_and_the_hosts_telemetry(fleet: Fleet) -> None:
    host = fleet.hosts[-1]
    out = run_module(fleet, host, "facts", {"window_s": 1, "sections": ["psi"]})
    facts = out["ansible_facts"]
    assert out["changed"] is False
    assert (facts["lumos_status"]["mode"], facts["lumos_status"]["policy"]["name"]) == ("sandbox", "fleet-test")
    assert facts["lumos_telemetry"]["detail"] == "summary" and set(facts["lumos_telemetry"]["signature"]) >= {"psi"}


# ------------------------------------------------------------------ the canary playbook
def test_a_good_change_rolls_out_in_waves_and_ends_committed_on_all_8_hosts(fleet: Fleet) -> None:
    target = other_than(values(fleet, SWAPPINESS), [37, 38])
    run = fleet.run_playbook({**QUICK, "lumos_changes": {SWAPPINESS: target}})
    assert run.returncode == 0, run.stdout[-4000:]
    assert values(fleet, SWAPPINESS) == [target] * 8
    for host in fleet.hosts:
        assert [t["state"] for t in touched(fleet.transactions(host), SWAPPINESS, target)] == ["committed"]
    assert wave_sizes(run.stdout, "Commit") == [1, 2, 5]  # serial [1, "25%", "100%"] of 8


def test_a_regression_on_the_canary_reverts_it_touches_no_other_host_and_stops_the_rollout(fleet: Fleet) -> None:
    before = values(fleet, CACHE_PRESSURE)
    target = other_than(before, [150, 160])
    run = fleet.run_playbook({**QUICK, "lumos_changes": {CACHE_PRESSURE: target}, "sim_regressing_host": "h01"})
    assert run.returncode != 0
    assert values(fleet, CACHE_PRESSURE) == before
    canary, *others = fleet.hosts
    assert [(t["state"], t["outcome"]) for t in touched(fleet.transactions(canary), CACHE_PRESSURE, target)] == [
        ("reverted", "requested")
    ]
    for host in others:  # not even staged: no later wave started
        assert not [t for t in fleet.transactions(host) if any(c["after"] == target for c in t["changes"])]
    assert wave_sizes(run.stdout, "Apply with a confirm deadline (check mode stages only)") == [1]


def test_a_denial_on_the_canary_stops_the_rollout_with_its_code_and_writes_nothing(fleet: Fleet) -> None:
    before = values(fleet, SWAPPINESS)
    run = fleet.run_playbook({**QUICK, "lumos_changes": {SWAPPINESS: 0}})
    assert run.returncode != 0
    assert "policy_denied" in run.stdout
    assert values(fleet, SWAPPINESS) == before
    for host in fleet.hosts:
        assert touched(fleet.transactions(host), SWAPPINESS, 0) == []


def test_check_mode_changes_nothing_on_any_host(fleet: Fleet) -> None:
    before = values(fleet, SWAPPINESS)
    target = other_than(before, [47, 48])
    run = fleet.run_playbook({**QUICK, "lumos_changes": {SWAPPINESS: target}}, check=True)
    assert run.returncode == 0, run.stdout[-4000:]
    assert values(fleet, SWAPPINESS) == before
    for host in fleet.hosts:
        assert touched(fleet.transactions(host), SWAPPINESS, target) == []
    assert f"+{SWAPPINESS} = {target}" in run.stdout  # --diff shows what would change
    assert wave_sizes(run.stdout, "Commit") == [0, 0, 0]


def test_the_rollback_option_sets_hosts_of_earlier_waves_back_through_their_servers(fleet: Fleet) -> None:
    before = values(fleet, CACHE_PRESSURE)
    target = other_than(before, [170, 180])
    run = fleet.run_playbook(
        {
            **QUICK,
            "lumos_changes": {CACHE_PRESSURE: target},
            "lumos_waves": [1, 1, "100%"],
            "sim_regressing_host": "h02",
            "lumos_rollback_all_on_failure": True,
        }
    )
    assert run.returncode != 0
    assert values(fleet, CACHE_PRESSURE) == before
    canary, second, *rest = fleet.hosts
    assert [t["state"] for t in touched(fleet.transactions(canary), CACHE_PRESSURE, target)] == ["committed"]
    assert [t["state"] for t in touched(fleet.transactions(canary), CACHE_PRESSURE, before[0])] == ["committed"]
    assert [t["state"] for t in touched(fleet.transactions(second), CACHE_PRESSURE, target)] == ["reverted"]
    for host in rest:
        assert touched(fleet.transactions(host), CACHE_PRESSURE, target) == []


def test_the_controller_killed_mid_wave_leaves_every_host_committed_or_reverted_by_its_own_deadline(
    fleet: Fleet, tmp_path: Path
) -> None:
    before = values(fleet, SWAPPINESS)
    target = other_than(before, [27, 28])
    deadline_s = 40  # the canary must commit within it on a loaded machine (module calls took seconds here)
    extra = {
        **QUICK,
        "lumos_changes": {SWAPPINESS: target},
        "lumos_confirm_within_s": deadline_s,
        "lumos_measure_s": 3,
        "lumos_waves": [1, 3, "100%"],
    }

    def states() -> list[list[str]]:
        return [[t["state"] for t in touched(fleet.transactions(h), SWAPPINESS, target)] for h in fleet.hosts]

    with fleet.playbook_process(extra, tmp_path / "playbook.log") as proc:
        until = time.monotonic() + 180
        while True:  # the canary committed and the second wave armed: kill the controller now
            now = states()
            if now[0] == ["committed"] and any(s == ["applied"] for s in now[1:4]):
                break
            assert proc.poll() is None, (tmp_path / "playbook.log").read_text()[-4000:]
            assert time.monotonic() < until, now
            time.sleep(0.2)  # polling servers in other processes: no event to wait on
        kill_controller(proc)  # the controller, its detached workers and their modules

    until = time.monotonic() + deadline_s + 30
    while any(s == ["applied"] for s in states()):  # each host's own deadline, no controller left
        assert time.monotonic() < until, states()
        time.sleep(0.5)
    final = values(fleet, SWAPPINESS)
    for i, host in enumerate(fleet.hosts):
        txs = touched(fleet.transactions(host), SWAPPINESS, target)
        assert [t["state"] for t in txs] in ([], ["committed"], ["reverted"])
        assert final[i] == (target if [t["state"] for t in txs] == ["committed"] else before[i])
        if txs and txs[0]["state"] == "reverted":
            assert txs[0]["outcome"] == "deadline"
    assert states()[0] == ["committed"]
    assert any(s == ["reverted"] for s in states()[1:4])
    assert all(s == [] for s in states()[4:])  # the third wave never started
