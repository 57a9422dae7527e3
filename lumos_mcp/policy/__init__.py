"""Policy: loading schema-checked policy files and the pure rule engine that judges changes."""

from lumos_mcp.policy.engine import (
    RULES,
    Change,
    CommitHistory,
    Denial,
    History,
    Verdict,
    evaluate,
    evaluate_commit,
    match_rule,
    raise_if_denied,
    referenced_knobs,
)
from lumos_mcp.policy.loader import load_policy, parse_policy
from lumos_mcp.policy.model import CrossRule, EnvelopeRule, GlobalRules, KnobRule, Policy, Speculation

__all__ = [
    "RULES",
    "Change",
    "CommitHistory",
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
    "evaluate_commit",
    "load_policy",
    "match_rule",
    "parse_policy",
    "raise_if_denied",
    "referenced_knobs",
]
