"""Rich consoles for the commands' tables: never cut at 80 columns when the output is not a terminal."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 200
"""Columns when the output is a pipe or a file (rich would assume 80 and cut the tables)."""


def console(stderr: bool = False) -> Console:
    """The terminal's width on a terminal; ``$COLUMNS`` or 200 columns when piped or captured."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPED_WIDTH)


__all__ = ["PIPED_WIDTH", "console"]
