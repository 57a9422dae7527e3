"""Policy: loading schema-checked policy files and the pure rule engine that judges changes."""

from lumos_mcp.policy.loader import load_policy, parse_policy
from lumos_mcp.policy.model import CrossRule, EnvelopeRule, GlobalRules, KnobRule, Policy, Speculation

__all__ = [
    "CrossRule",
    "EnvelopeRule",
    "GlobalRules",
    "KnobRule",
    "Policy",
    "Speculation",
    "load_policy",
    "parse_policy",
]
