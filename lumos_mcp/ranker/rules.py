"""What the ranker's users need without scikit-learn: labels, the margin rule and the error type."""

from __future__ import annotations

from lumos_mcp.errors import LumosError

GLOBAL = "global"
NOVEL = "novel: global fallback"
DEFAULT_DELTA = 0.2


class RankerModelError(LumosError):
    """A ranker model that cannot be trained, loaded or used as asked."""

    code = "ranker_model_error"


def decide(margin: float, delta: float, challenger: int, incumbent: int) -> int:
    """The margin rule: the challenger only if its margin over the incumbent is at least ``delta``."""
    return challenger if margin >= delta else incumbent
