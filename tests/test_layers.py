"""Imports between the package's layers point one way (DESIGN.md, section 2).

The core layers import only the layers below them, and the product never imports the lab:
`lumos_mcp.ranker` (what the server loads) does not import `lumos_mcp.arena` (experiments).
Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lumos_mcp

PACKAGE = Path(lumos_mcp.__file__).resolve().parent
#: small leaf modules any layer may use
LEAVES = {"errors", "privfs", "resources", "bounded", "compare"}
#: layer -> the other layers it may import (besides LEAVES)
ALLOWED = {
    "knobs": set(),
    "kernelfs": {"knobs"},
    "txn": {"kernelfs", "knobs"},
    # guards.py is the pure guard rule engine; it knows the telemetry signature's schema to check
    # a guard's metric path when a policy loads, so policy -> guards -> telemetry (never the service)
    "policy": {"knobs", "guards"},
    "guards": {"telemetry"},
    "audit": set(),
    "telemetry": {"kernelfs"},
    "ranker": {"telemetry"},
}


def _layer_of(module: str) -> str:
    return module.split(".")[1]


def _layers_in(source: str) -> set[str]:
    """The top-level layers of lumos_mcp that ``source`` imports, anywhere in the file."""
    layers: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lumos_mcp"):
            if node.module == "lumos_mcp":
                layers.update(a.name for a in node.names)
            else:
                layers.add(_layer_of(node.module))
        elif isinstance(node, ast.Import):
            layers.update(_layer_of(a.name) for a in node.names if a.name.startswith("lumos_mcp."))
    return layers


def _imported_layers(layer: str) -> dict[str, set[str]]:
    """For each file of ``layer``: the other top-level layers of lumos_mcp it imports."""
    base = PACKAGE / layer
    files = sorted(base.rglob("*.py")) if base.is_dir() else [PACKAGE / f"{layer}.py"]
    return {str(p.relative_to(PACKAGE)): _layers_in(p.read_text()) - {layer} for p in files}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_core_layer_imports_only_the_layers_below_it(layer: str) -> None:
    allowed = ALLOWED[layer] | LEAVES
    wrong = {f: sorted(layers - allowed) for f, layers in _imported_layers(layer).items() if layers - allowed}
    assert wrong == {}, f"{layer} imports layers above it: {wrong}"


def test_the_ranker_the_server_loads_never_imports_the_arena_lab() -> None:
    offenders = [f for f, layers in _imported_layers("ranker").items() if "arena" in layers]
    assert offenders == []


def test_the_checker_sees_every_import_form_including_lazy_ones() -> None:
    source = (
        "import os\n"
        "import lumos_mcp.txn.journal\n"
        "from lumos_mcp import audit\n"
        "from lumos_mcp.knobs.spec import KnobSpec\n"
        "def late():\n"
        "    from lumos_mcp.arena import runner\n"
    )
    assert _layers_in(source) == {"txn", "audit", "knobs", "arena"}
