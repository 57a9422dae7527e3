"""The README's MCP client entries work as written: each starts `lumos-mcp serve` over stdio and lists
its tools; the `claude mcp add` line runs the same command; the wheel ships the data it needs."""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client, StdioServerParameters

from lumos_mcp.resources import ranker_model_dir

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def client_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Use it from an MCP client")
    return text[start : text.index("\n## ", start + 1)]


def entries() -> dict[str, dict[str, Any]]:
    """Each JSON block of the section, keyed by the client named in bold before it."""
    found: dict[str, dict[str, Any]] = {}
    client = "?"
    for line_or_block in re.split(r"(```json\n.*?\n```)", client_section(), flags=re.S):
        if line_or_block.startswith("```json"):
            config = orjson.loads(line_or_block.removeprefix("```json\n").removesuffix("\n```"))
            servers = config.get("mcpServers", config.get("servers"))
            found[client] = {"top": next(iter(config)), **servers["lumos-mcp"]}
        else:
            names = re.findall(r"\*\*([^*]+)\*\*", line_or_block)
            client = names[-1] if names else client
            if "mcp.json" in line_or_block and "Claude Code" in client:
                client = "Claude Code .mcp.json"
    return found


def test_the_readme_has_an_entry_for_each_client_in_its_format() -> None:
    found = entries()
    assert set(found) == {"Claude Desktop", "Claude Code .mcp.json", "VS Code", "Cursor"}
    assert found["VS Code"]["top"] == "servers" and found["VS Code"]["type"] == "stdio"
    assert {found[c]["top"] for c in ("Claude Desktop", "Claude Code .mcp.json", "Cursor")} == {"mcpServers"}
    example = orjson.loads((ROOT / "examples" / "claude_desktop_config.json").read_bytes())
    assert example["mcpServers"]["lumos-mcp"]["args"] == found["Claude Desktop"]["args"]


def test_the_claude_mcp_add_line_starts_the_same_command_as_the_json_entries() -> None:
    line = next(c for c in re.findall(r"```sh\n(.+?)\n```", client_section(), flags=re.S) if "claude mcp add" in c)
    words = shlex.split(line)
    assert words[:4] == ["claude", "mcp", "add", "lumos-mcp"]
    command = words[words.index("--") + 1 :]
    entry = entries()["Cursor"]
    assert command == [entry["command"], *entry["args"]]


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("client", ["Claude Desktop", "Claude Code .mcp.json", "VS Code", "Cursor"])
async def test_each_readme_entry_starts_the_server_and_lists_its_tools(client: str, tmp_path: Path) -> None:
    entry = entries()[client]
    command = str(BIN / entry["command"]) if (BIN / entry["command"]).exists() else entry["command"]
    params = StdioServerParameters(
        command=command, args=entry["args"], env={"LUMOS_STATE_DIR": str(tmp_path)}, cwd=str(tmp_path)
    )
    with anyio.fail_after(60):
        async with Client(params) as session:
            names = {t.name for t in (await session.list_tools()).tools}
    assert {"list_tunables", "stage_sched_params", "apply", "commit", "revert"} <= names


def test_the_wheel_ships_the_policies_schemas_and_ranker_model() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert included == {
        "schemas": "lumos_mcp/_data/schemas",
        "policies": "lumos_mcp/_data/policies",
        "data/ranker/model": "lumos_mcp/_data/ranker/model",
    }
    assert (ranker_model_dir() / "manifest.json").is_file()
