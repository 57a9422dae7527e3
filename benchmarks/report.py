"""Shared by the benchmarks: percentiles, run conditions, and docs/benchmarks.md sections."""

from __future__ import annotations

import datetime
import math
import os
import platform
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
DOC_TITLE = "# lumos-mcp benchmarks"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def conditions() -> str:
    """Date, machine and load, one markdown bullet list."""
    load = os.getloadavg()
    return "\n".join(
        [
            f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- Machine: {os.cpu_count()} CPUs (nproc), kernel {platform.release()}, "
            f"Python {platform.python_version()}, {platform.machine()}",
            f"- Load average at the end of the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
            "(a shared machine: other measurements may run alongside)",
        ]
    )


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command that reproduces this run, from the repository root (with its venv's python)."""
    return shlex.join(["python", "-m", module, *argv])


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(title: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the ``## title`` section of ``doc``; other sections stay as they are."""
    text = doc.read_text() if doc.exists() else DOC_TITLE + "\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text.rstrip("\n") + "\n")
