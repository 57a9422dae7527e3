"""Where the shipped data lives: ``schemas/``, ``policies/`` and ``data/ranker/model`` in a checkout,
``_data/`` in a wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory of shipped ``schemas`` or ``policies``.

    Raises:
        FileNotFoundError: neither the installed nor the checkout location exists.
    """
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"lumos-mcp data directory {name!r} not found (broken install?)")


def schema_path(name: str) -> Path:
    return data_dir("schemas") / name


def policy_path(name: str) -> Path:
    """A shipped policy by short name (``"default"``) or file name."""
    file = name if name.endswith(".toml") else f"{name}.toml"
    return data_dir("policies") / file


def ranker_model_dir() -> Path:
    """The shipped ranker model: ``_data/ranker/model`` in a wheel, ``data/ranker/model`` in a checkout
    (the checkout's path when neither exists, so the error names where a model was expected)."""
    installed = _PACKAGE / "_data" / "ranker" / "model"
    return installed if installed.is_dir() else _PACKAGE.parent / "data" / "ranker" / "model"
