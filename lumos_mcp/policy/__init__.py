"""Policy: loading schema-checked policy files and the pure rule engine that judges changes."""

from lumos_mcp.policy.engine import (
    RULES,
    Change,
    Denial,
    History,
    Verdict,
    evaluate,
    match_rule,
    raise_if_denied,
    referenced_knobs,
)
from lumos_mcp.policy.loader import load_policy, parse_policy
from lumos_mcp.policy.model import CrossRule, EnvelopeRule, GlobalRules, KnobRule, Policy, Speculation

__all__ = [
    "RULES",
    "Change",
    "CrossRule",
    "Denial",
    "EnvelopeRule",
    "GlobalRules",
    "History",
    "KnobRule",
    "Policy",
    "Speculation",
    "Verdict",
    "evaluate",
    "load_policy",
    "match_rule",
    "parse_policy",
    "raise_if_denied",
    "referenced_knobs",
]
