"""The MCP layer's imports point one way: app -> tool modules -> common -> service."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import lumos_mcp.server as server

PACKAGE = Path(server.__file__).resolve().parent
NAME = "lumos_mcp.server"


def _imports(path: Path) -> set[str]:
    """The modules of the package that ``path`` imports (anywhere in the file, lazy ones too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == NAME:
                found.update(f"{NAME}.{a.name}" for a in node.names)
            elif node.module.startswith(NAME + "."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(NAME + "."))
    return found


def _graph() -> dict[str, set[str]]:
    return {f"{NAME}.{p.stem}": _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def test_the_helpers_module_imports_no_module_of_the_server_package() -> None:
    assert _graph()[f"{NAME}.common"] == set()


def test_tool_modules_import_only_the_helpers_and_the_package_has_no_cycle() -> None:
    graph = _graph()
    for module, imported in graph.items():
        if module != f"{NAME}.app":
            assert imported <= {f"{NAME}.common"}, (module, imported)
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as e:  # pragma: no cover - the assertion message is the point
        raise AssertionError(f"import cycle in the MCP layer: {e.args[1]}") from e
    assert order[0] == f"{NAME}.common" and order[-1] == f"{NAME}.app"


def test_the_old_flat_server_modules_are_gone_and_build_server_still_imports() -> None:
    parent = PACKAGE.parent
    assert not [p.name for p in parent.glob("server*.py")]
    code = "from lumos_mcp.server import build_server; import lumos_mcp.server.common as c; print(build_server)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
