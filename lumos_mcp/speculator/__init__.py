"""The speculator: fast, small, auto-reverting moves inside the policy's speculation envelope
while the slow agent deliberates (see docs/speculator.md)."""

from __future__ import annotations

from lumos_mcp.speculator.controller import (
    Decision,
    DecisionState,
    Envelope,
    Move,
    Signal,
    Speculator,
    decide,
    envelope_for,
    start_speculator,
    stop_speculator,
    trend_signal,
)

__all__ = [
    "Decision",
    "DecisionState",
    "Envelope",
    "Move",
    "Signal",
    "Speculator",
    "decide",
    "envelope_for",
    "start_speculator",
    "stop_speculator",
    "trend_signal",
]
