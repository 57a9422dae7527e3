from __future__ import annotations

import ast
import re
from pathlib import Path

import lumos_mcp.telemetry as telemetry

PACKAGE = Path(telemetry.__file__).resolve().parent
# compare: the leaf statistics (tests/test_layers.py LEAVES) app metrics' windows are compared with
ALLOWED_INTERNAL = ("lumos_mcp.kernelfs", "lumos_mcp.errors", "lumos_mcp.telemetry", "lumos_mcp.compare")


def test_public_api_is_pinned() -> None:
    assert sorted(telemetry.__all__) == sorted(
        [
            "DEFAULT_EVENTS",
            "SCHEMA_VERSION",
            "SECTIONS",
            "AppMetrics",
            "CgroupCpu",
            "CpuTimes",
            "DiskStats",
            "LoadAvg",
            "MemInfo",
            "NetDev",
            "PerfInterval",
            "PerfRecord",
            "PerfStat",
            "Pressure",
            "PressureLine",
            "ProcStat",
            "Progress",
            "PromSample",
            "Sampler",
            "Schedstat",
            "SchedstatCpu",
            "ShiftRule",
            "Signature",
            "Snapshot",
            "Snmp",
            "Telemetry",
            "Trends",
            "VmStat",
            "interval_metrics",
            "parse_cgroup_v1_cpu",
            "parse_cgroup_v2_cpu",
            "parse_diskstats",
            "parse_loadavg",
            "parse_meminfo",
            "parse_net_dev",
            "parse_perf_line",
            "parse_pressure",
            "parse_prometheus_text",
            "parse_schedstat",
            "parse_snmp",
            "parse_stat",
            "parse_vmstat",
            "read_cgroup_cpu",
            "read_diskstats",
            "read_loadavg",
            "read_meminfo",
            "read_net_dev",
            "read_pressure",
            "read_schedstat",
            "read_snapshot",
            "read_snmp",
            "read_stat",
            "read_vmstat",
            "scrape_prometheus",
            "sections_between",
            "telemetry_json_schema",
            "write_schema",
        ]
    )
    for name in telemetry.__all__:
        assert hasattr(telemetry, name), name


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_telemetry_never_spells_an_absolute_proc_or_sys_path_in_code() -> None:
    for source in PACKAGE.glob("*.py"):
        tree = ast.parse(source.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                assert not re.search(r"(^|[^A-Za-z0-9_.])/(proc|sys)\b", node.value), f"{source.name}: {node.value!r}"


def test_telemetry_imports_only_kernelfs_and_errors_internally() -> None:
    for source in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                if module.startswith("lumos_mcp"):
                    assert module.startswith(ALLOWED_INTERNAL), f"{source.name} imports {module}"
