"""The README opens with the two commands that work on a fresh machine; CI runs the second."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_readme_opens_with_exactly_two_commands_install_run_and_test() -> None:
    commands = readme_commands()
    assert len(commands) >= 2
    run, test = commands[0], commands[1]
    assert "pip install" in run and "lumos-mcp tune" in run
    assert "pip install" in test and "pytest" in test and "mypy" in test and "ruff" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_public_package_surface_is_pinned() -> None:
    import lumos_mcp
    import lumos_mcp.errors

    assert lumos_mcp.__all__ == ["__version__"]
    assert "LumosError" in lumos_mcp.errors.__all__
    assert all(hasattr(lumos_mcp.errors, name) for name in lumos_mcp.errors.__all__)
