from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("sklearn") is None:  # the optional extra lumos-mcp[ranker]
    collect_ignore_glob = ["test_*.py"]

from lumos_mcp.ranker.dataset import WindowRecord
from lumos_mcp.ranker.model import RankerModel
from tests.ranker.ranker_helpers import tiny_model


@pytest.fixture(scope="session")
def trained() -> tuple[RankerModel, list[WindowRecord]]:
    return tiny_model()
