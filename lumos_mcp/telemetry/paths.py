"""Dotted numeric paths into a signature (``psi.cpu.some.avg10_pct``, ``app.p99_ms.last``,
``cgroups.batch.throttled_pct``) and the one lookup every reader of such a path uses.

A path reads a :class:`~lumos_mcp.telemetry.signature.Signature`, the same data dumped as
plain dicts, or a :class:`PathValues` that computes only the paths asked for (the guards'
per-sample view, ``Telemetry.pair_values``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

IDENTITY_FIELDS = ("name", "device", "interface", "cpu")
"""How a path picks one item of a list section: ``cgroups.batch``, ``io.vda``, ``cpu.per_core.0``."""


class PathValues:
    """Something that answers a path by itself, without a whole signature behind it."""

    def value(self, path: str) -> float | None:
        """The number at ``path`` (None: absent or null), as :func:`lookup` on the full signature
        would give it."""
        raise NotImplementedError


@lru_cache(maxsize=4096)
def split(path: str) -> tuple[str, ...]:
    """``path``'s parts (parsed once per distinct path)."""
    return tuple(path.split("."))


def number(node: Any) -> float | None:
    """``node`` as a finite float (None: not a number, a bool, or not finite)."""
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        return None
    return float(node)


def lookup(data: Any, path: str) -> float | None:
    """The number at ``path`` in a signature (the model, or dumped as data, or a
    :class:`PathValues`); None when it is absent or null."""
    if isinstance(data, PathValues):
        return data.value(path)
    parts = split(path)
    node: Any = data
    i = 0
    while i < len(parts):
        if isinstance(node, BaseModel):
            node = getattr(node, parts[i], None) if parts[i] in type(node).model_fields else None
            i += 1
        elif isinstance(node, Mapping):
            node = node.get(parts[i])
            i += 1
        elif isinstance(node, list):
            # the identity is every part but the field (an app metric may be called "db.p99")
            ident = ".".join(parts[i:-1])
            node = next((item for item in node if _identity(item) == ident), None)
            i = len(parts) - 1
        else:
            return None
        if node is None:
            return None
    return number(node)


def _identity(item: Any) -> str | None:
    for key in IDENTITY_FIELDS:
        if isinstance(item, BaseModel) and key in type(item).model_fields:
            return str(getattr(item, key))
        if isinstance(item, Mapping) and key in item:
            return str(item[key])
    return None
