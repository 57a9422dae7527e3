"""Caller data made safe to echo and to record: plain JSON, bounded in size, and saying where
it was cut. A rejected 1 MiB value must not come back whole in the answer nor fill the audit
log; an integer orjson cannot encode (beyond 64 bits) must not turn a typed error into a crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_TEXT = 256  # characters kept of a string value
MAX_ITEMS = 64  # items kept of a list or mapping
MAX_DEPTH = 8  # nesting kept; deeper values become a cut repr
MAX_MESSAGE = 1024  # characters kept of an error message
CUT_KEY = "cut"  # the key a cut mapping gains, saying how many items it had


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` or, if longer than ``limit``, its start and a note of how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[cut: {len(text)} chars, first {limit} kept]"


def fits_json(value: int) -> bool:
    """Whether orjson (the audit log, the journal, the wire) can encode this integer."""
    return -(2**63) <= value < 2**64


def bounded(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON data no larger than the limits above.

    Strings are clipped, lists and mappings keep their first ``MAX_ITEMS`` items (a list gains
    a last string item, a mapping a ``"cut"`` key, saying how many there were), integers beyond
    64 bits and non-finite floats become strings, and anything else becomes its clipped repr.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if fits_json(value) else clip(str(value), 64)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return clip(value)
    if depth >= MAX_DEPTH:
        return clip(repr(value), 64)
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {clip(str(k)): bounded(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out[CUT_KEY] = f"{len(items)} items, first {MAX_ITEMS} kept"
        return out
    if isinstance(value, list | tuple | set | frozenset):
        seq = list(value)
        kept = [bounded(v, depth + 1) for v in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            kept.append(f"[cut: {len(seq)} items, first {MAX_ITEMS} kept]")
        return kept
    return clip(repr(value), 200)
