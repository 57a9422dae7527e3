"""The collection's own checks that run offline (ansible-test's validate-modules, the galaxy
build) and the Kubernetes manifests of deploy/k8s, rendered and validated against the schemas
kubernetes-validate bundles (no cluster, no network)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import ansible_test
import pytest

from lumos_mcp.policy.loader import parse_policy
from tools.render_kustomize import KustomizationError, render, validate

REPO = Path(__file__).resolve().parents[1]
COLLECTION = REPO / "ansible_collections" / "lumos" / "tuning"
BASE = REPO / "deploy" / "k8s" / "base"
VALIDATE_MODULES = Path(ansible_test.__file__).parent / "_util" / "controller" / "sanity" / "validate-modules"
NOT_CHECKED = {"missing-gplv3-license"}
"""Ansible's own modules must be GPLv3; this collection is MIT like lumos-mcp (it imports only
ansible.module_utils.basic, which is BSD-2-Clause), so the header check does not apply."""


@pytest.mark.slow
def test_every_module_passes_ansible_tests_validate_modules_run_offline() -> None:
    # `ansible-test sanity` would build its own venv and fetch pip from the network first; the
    # check itself is this script, run here with the requirements the test extra installs.
    modules = sorted(str(p.relative_to(COLLECTION)) for p in (COLLECTION / "plugins" / "modules").glob("*.py"))
    out = subprocess.run(
        [
            *(sys.executable, str(VALIDATE_MODULES / "validate.py"), "--format", "json", "--arg-spec"),
            *("--collection", "ansible_collections/lumos/tuning", "--collection-version", "0.1.0", *modules),
        ],
        cwd=COLLECTION,
        env={**os.environ, "PYTHONPATH": str(VALIDATE_MODULES), "ANSIBLE_COLLECTIONS_PATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode in (0, 3), out.stderr
    report = json.loads(out.stdout)
    assert sorted(report) == modules
    errors = {m: [e for e in r["errors"] if e["code"] not in NOT_CHECKED] for m, r in report.items()}
    assert errors == {m: [] for m in modules}


@pytest.mark.slow
def test_the_collection_builds_with_ansible_galaxy(tmp_path: Path) -> None:
    galaxy = Path(sys.executable).with_name("ansible-galaxy")
    out = subprocess.run(
        [str(galaxy), "collection", "build", str(COLLECTION), "--output-path", str(tmp_path)],
        env={**os.environ, "ANSIBLE_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    with tarfile.open(tmp_path / "lumos-tuning-0.1.0.tar.gz") as tar:
        names = set(tar.getnames())
    for module in ("apply", "commit", "revert", "facts", "app_metric"):
        assert f"plugins/modules/{module}.py" in names
    assert {"playbooks/canary.yml", "plugins/module_utils/lumos_client.py", "meta/runtime.yml"} <= names


def rendered() -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render(BASE)}


def test_the_rendered_base_is_valid_against_the_kubernetes_schemas_strictly() -> None:
    objects = render(BASE)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"]
    assert validate(objects) == []


def test_the_validator_catches_an_unknown_field_and_a_wrong_type() -> None:
    daemonset = rendered()["DaemonSet"]
    typo = copy.deepcopy(daemonset)
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": "mcp"}}
    wrong_type = copy.deepcopy(daemonset)
    wrong_type["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    assert len(validate([typo])) == 1
    assert len(validate([wrong_type])) == 1


def test_the_renderer_refuses_a_kustomization_field_it_does_not_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: []\n")
    with pytest.raises(KustomizationError):
        render(tmp_path)


def test_the_daemonset_runs_a_live_http_server_with_the_policy_token_and_state_it_mounts() -> None:
    objects = rendered()
    pod = objects["DaemonSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {"serve", "--http", "--mode=live", "--allow-remote"} <= set(args)
    assert "--policy=/etc/lumos-mcp/policy.toml" in args and mounts["policy"]["mountPath"] == "/etc/lumos-mcp"
    assert volumes["policy"]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert "--token-file=/run/secrets/lumos-mcp/token" in args and mounts["token"]["readOnly"] is True
    assert volumes["token"]["secret"]["secretName"] == "lumos-mcp-token"
    assert "--state-dir=/var/lib/lumos-mcp" in args
    assert volumes["state"]["hostPath"] == {"path": "/var/lib/lumos-mcp", "type": "DirectoryOrCreate"}
    assert container["readinessProbe"]["tcpSocket"]["port"] == "mcp"
    assert container["image"] == "lumos-mcp:0.1.0"
    assert {o["metadata"].get("namespace") for k, o in objects.items() if k != "Namespace"} == {"lumos-mcp"}


def test_the_daemonset_asks_only_for_the_privileges_its_comments_justify() -> None:
    objects = rendered()
    pod = objects["DaemonSet"]["spec"]["template"]["spec"]
    security = pod["containers"][0]["securityContext"]
    assert security == {"privileged": True, "runAsUser": 0, "readOnlyRootFilesystem": True}
    assert pod["hostNetwork"] is True
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["automountServiceAccountToken"] is False
    assert objects["ServiceAccount"]["automountServiceAccountToken"] is False


def test_the_configmaps_policy_loads_with_lumos_mcps_own_loader() -> None:
    policy = parse_policy(tomllib.loads(rendered()["ConfigMap"]["data"]["policy.toml"]), file="configmap")
    assert policy.name == "default"
