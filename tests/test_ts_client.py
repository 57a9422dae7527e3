"""The official TypeScript SDK clients drive a real server over stdio and streamable HTTP: tools
list, successful calls with structured output, and each typed error arriving as an ``is_error``
result the client can read. v1 is npm ``@modelcontextprotocol/sdk`` 1.x (what most hosts ship;
it checks structuredContent against the output schema even on errors), v2 is
``@modelcontextprotocol/client`` 2.x (what the MCP Inspector 2.x is built on).

The node side is ``tests/ts/scenario.mjs``; its packages come from ``tests/ts/package-lock.json``
(``npm ci --prefix tests/ts``, which ``.ci/run`` does when they are missing). Under ``CI=true``
a missing node or package fails these tests; elsewhere they skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http_helpers import free_port, serving_http

ROOT = Path(__file__).resolve().parent.parent
TS = ROOT / "tests" / "ts"
PACKAGES = {"v1": "sdk", "v2": "client"}  # under node_modules/@modelcontextprotocol/
POLICY = ROOT / "tests" / "data" / "policy-ts.toml"
TOKEN = "ts-suite-token-0123456789abcdef"
EXPECTED_VERSIONS = {"@modelcontextprotocol/sdk": "1.32.2", "@modelcontextprotocol/client": "2.3.1"}
pytestmark = pytest.mark.slow


def _node(sdk: str) -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not on PATH (Node 20+ runs the TypeScript SDK client suite)"
    elif not (TS / "node_modules" / "@modelcontextprotocol" / PACKAGES[sdk] / "package.json").is_file():
        missing = f"the TypeScript SDK is not installed in {TS}: run `npm ci --prefix tests/ts`"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)
    assert node is not None
    return node


def _server_env(state: Path) -> dict[str, str]:
    return {**os.environ, "LUMOS_STATE_DIR": str(state), "PYTHONPATH": str(ROOT), "LUMOS_MCP_TOKEN": TOKEN}


def _serve(*extra: str) -> list[str]:
    return [sys.executable, "-m", "lumos_mcp", "serve", "--mode", "sandbox", "--policy", str(POLICY), *extra]


@pytest.fixture
def http_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with serving_http(
        _serve("--http", "--port", str(port)), _server_env(tmp_path), port, tmp_path / "server.log"
    ) as url:
        yield url


def _run(node: str, config: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(TS / "scenario.mjs"), json.dumps(config)],
        cwd=TS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout, f"no report from node (rc {done.returncode}): {done.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == 0 and "fatal" not in report, report.get("fatal", done.stderr[-2000:])
    return report


def _check(report: dict[str, Any]) -> None:
    assert report["sdkVersion"] == EXPECTED_VERSIONS[report["sdk"]]  # what tests/ts/package-lock.json pins
    assert report["protocolVersion"] == "2025-11-25"
    tools = {t["name"]: t for t in report["tools"]}
    assert {"list_tunables", "stage_sched_params", "apply", "commit", "revert", "get_status"} <= set(tools)
    assert all(t["hasOutputSchema"] for t in tools.values())
    calls = report["calls"]
    # success: the TS client validated structuredContent against each output schema
    for name in (
        "list_tunables",
        "stage",
        "apply",
        "revert",
        "read_telemetry",
        "read_telemetry_full",
        "report_samples",
        "report_value",
        "compare_windows",
        "compare_windows_seconds",
    ):
        assert calls[name]["thrown"] is None and calls[name]["isError"] is False, calls[name]
    assert calls["report_samples"]["structured"]["samples"] == 4
    # the samples came after the apply and within the last 300 s: one side empty, no evidence
    assert calls["compare_windows"]["structured"]["verdict"] == "no evidence"
    assert calls["compare_windows_seconds"]["structured"]["n_after"] == 4
    assert calls["read_telemetry"]["structured"]["detail"] == "summary"
    assert calls["read_telemetry_full"]["structured"]["signature"]["cpu"]["per_core"]
    assert calls["stage"]["structured"]["allowed"] is True
    assert calls["apply"]["structured"]["state"] == "applied"
    assert calls["revert"]["structured"]["state"] == "reverted"
    # every error: no exception in the client, an is_error result whose text is the typed error
    expected = {
        "policy_denied": "policy_denied",
        "approval_required": "approval_required",
        "invalid_arguments": "invalid_arguments",
        "unknown_argument": "invalid_arguments",
        "unknown_knob": "unknown_knob",
        "unknown_transaction": "unknown_transaction",
        "unknown_tool": "unknown_tool",
    }
    for name, code in expected.items():
        call = calls[name]
        assert call["thrown"] is None, call
        assert call["isError"] is True and call["structured"] is None, call
        assert call["error"]["code"] == code, call
    assert calls["policy_denied"]["error"]["fields"]["denials"][0]["knob"] == "vm.swappiness"
    assert calls["invalid_arguments"]["error"]["fields"]["arguments"] == ["txid"]
    assert calls["unknown_argument"]["error"]["fields"]["arguments"] == ["verbose"]
    assert calls["unknown_knob"]["error"]["fields"]["knob"] == "kernel.core_pattern"


@pytest.mark.parametrize("sdk", sorted(PACKAGES))
def test_the_typescript_sdk_client_reads_results_and_typed_errors_over_stdio(tmp_path: Path, sdk: str) -> None:
    node = _node(sdk)
    report = _run(
        node,
        {
            "sdk": sdk,
            "transport": "stdio",
            "command": sys.executable,
            "args": _serve()[1:],
            "env": _server_env(tmp_path),
            "cwd": str(tmp_path),
        },
    )
    _check(report)


@pytest.mark.parametrize("sdk", sorted(PACKAGES))
def test_the_typescript_sdk_client_reads_results_and_typed_errors_over_http_with_a_token(
    http_url: str, sdk: str
) -> None:
    node = _node(sdk)
    report = _run(node, {"sdk": sdk, "transport": "http", "url": http_url, "token": TOKEN})
    _check(report)
