"""The zero-mod ranker tool: order candidate configurations from their signatures alone.

A candidate is a configuration the host has already run: give its ``signature`` (a
``read_telemetry`` signature, nested, or a flat ``{"sched.ctx_switches_per_s": ...}``), or the
``txid`` of a transaction that applied it, and the server cuts the signature from its own
telemetry buffer between the apply (plus ``settle_s``) and the revert, commit or now (the
buffer holds the last hour at 1 Hz). The model is loaded once, from ``model_path`` (default:
the checkout's ``data/ranker/model``); it is a pickle, so only point this at models you trust.
The model reads cgroup counters by role (``app``: the group whose performance matters,
``other``: the group that trades against it); ``roles`` names this host's groups for them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field, field_validator

from lumos_mcp.ranker.rules import NOVEL, RankerModelError
from lumos_mcp.resources import ranker_model_dir
from lumos_mcp.server.common import READ_ONLY, domain_errors, ok
from lumos_mcp.service import Service
from lumos_mcp.telemetry.app import MAX_APP_VALUE

if TYPE_CHECKING:
    from lumos_mcp.ranker.model import RankerModel

DEFAULT_MODEL = ranker_model_dir()
"""The shipped model: inside the package in a wheel, ``data/ranker/model`` in a checkout."""


class Candidate(BaseModel):
    label: str = Field(description="Your name for this configuration, e.g. 'shares=256' or a txid.", max_length=200)
    config: dict[str, Any] | None = Field(None, description="The knob values it stands for (echoed back, not used).")
    signature: dict[str, Any] | None = Field(
        None, description="Its window's signature: read_telemetry(detail='full')'s `signature`, or flat dotted metrics."
    )
    txid: str | None = Field(None, description="Or: the transaction that applied it; the server cuts the window.")

    @field_validator("signature")
    @classmethod
    def _numbers_in_range(cls, signature: dict[str, Any] | None) -> dict[str, Any] | None:
        for path, number in _numbers(signature):
            if not math.isfinite(number) or abs(number) > MAX_APP_VALUE:
                raise ValueError(f"{path} = {number!r}: signature numbers are finite, |x| <= {MAX_APP_VALUE:g}")
        return signature


def _numbers(value: Any, path: str = "signature") -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{str(k)[:64]}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}.{i}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, float(value)


class RankedCandidate(BaseModel):
    label: str
    rank: int = Field(description="1 = predicted best")
    score: float = Field(description="mean predicted probability of beating each other candidate (0..1)")
    margin_vs_incumbent: float = Field(description="2 P(beats the incumbent) - 1, in -1..1; 0 for the incumbent")
    config: dict[str, Any] | None = None


class RankResult(BaseModel):
    order: list[RankedCandidate]
    archetype: str = Field(description="the archetype whose ranker answered, or 'novel: global fallback'")
    mahalanobis_distance: float = Field(description="distance of the candidates' mean embedding to that archetype")
    novelty_threshold: float | None
    incumbent: str
    recommendation: str = Field(
        description="the label to run: the best challenger if its margin >= delta, else the incumbent"
    )
    keep_incumbent: bool
    delta: float
    model: dict[str, Any] = Field(description="format version, training data hash and size")
    next: str


class RankerHolder:
    """Loads the model on first use (once), so a server without a model still starts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._model: RankerModel | None = None
        self._lock = threading.Lock()

    def get(self) -> RankerModel:
        """Raises: RankerModelError: no model there, or it cannot be loaded."""
        with self._lock:
            if self._model is None:
                if not (self.path / "manifest.json").is_file():
                    raise RankerModelError(
                        "no ranker model: train one with `python -m lumos_mcp.ranker train`", path=str(self.path)
                    )
                try:  # scikit-learn is the optional extra lumos-mcp[ranker]
                    from lumos_mcp.ranker.model import RankerModel
                except ImportError as e:
                    raise RankerModelError(
                        f"the ranker needs scikit-learn: pip install 'lumos-mcp[ranker]' ({e})", path=str(self.path)
                    ) from e
                self._model = RankerModel.load(self.path)
            return self._model


def _signature_of(service: Service, c: Candidate, settle_s: float) -> dict[str, Any]:
    if c.signature is not None:
        return c.signature
    if c.txid is None:
        raise RankerModelError("a candidate needs a signature or a txid", label=c.label)
    tx = service.txns.get(c.txid)
    if tx.applied_at is None:
        raise RankerModelError("that transaction was never applied", label=c.label, txid=c.txid)
    end = tx.closed_at if tx.closed_at is not None and tx.outcome != "committed" else service.clock()
    sig = service.telemetry.signature_between(tx.applied_at + settle_s, end)
    return sig.model_dump(mode="json")


def rank_candidates(
    service: Service,
    model: RankerModel,
    candidates: list[Candidate],
    incumbent: int,
    delta: float | None,
    settle_s: float,
    roles: dict[str, str] | None = None,
) -> RankResult:
    """The tool's body, usable without MCP. ``roles`` overrides the model's cgroup names per role.

    Raises:
        RankerModelError: fewer than two candidates, a bad incumbent, or a candidate without a window.
        UnknownTransactionError, TelemetryNotReadyError: a txid the server does not know or no longer buffers.
    """
    sigs = [_signature_of(service, c, settle_s) for c in candidates]
    if roles:
        model = model.with_roles(roles)  # the shared model keeps its roles; only this call reads others
    r = model.rank(sigs, incumbent=incumbent, delta=delta)
    order = [
        RankedCandidate(
            label=candidates[i].label,
            rank=n + 1,
            score=round(r.scores[n], 4),
            margin_vs_incumbent=round(r.margins[n], 4),
            config=candidates[i].config,
        )
        for n, i in enumerate(r.order)
    ]
    keep = r.choice == incumbent
    rec = candidates[r.choice].label
    return RankResult(
        order=order,
        archetype=r.gate.label,
        mahalanobis_distance=round(r.gate.distance, 3),
        novelty_threshold=None if r.gate.threshold is None else round(r.gate.threshold, 3),
        incumbent=candidates[incumbent].label,
        recommendation=rec,
        keep_incumbent=keep,
        delta=r.delta,
        model={
            "format_version": model.manifest.get("format_version"),
            "training_data": model.manifest.get("training_data"),
            "sklearn_version": model.manifest.get("sklearn_version"),
        },
        next=(
            "Keep the incumbent: no challenger beats it by the margin delta."
            if keep
            else f"Apply (or commit) '{rec}'; measure again before trusting it further."
        )
        + (" The workload looks novel: the global ranker answered, trust it less." if r.gate.label == NOVEL else ""),
    )


def register(mcp: MCPServer[Service], service: Service, model_path: Path | None = None) -> RankerHolder:
    holder = RankerHolder(model_path or DEFAULT_MODEL)

    @mcp.tool(title="Rank configurations from counters alone", annotations=READ_ONLY)
    @domain_errors
    async def rank_configs(
        candidates: Annotated[list[Candidate], Field(min_length=2, max_length=32)],
        incumbent: Annotated[int, Field(ge=0, description="Index of the configuration running now.")] = 0,
        delta: Annotated[
            float | None, Field(ge=0, le=1, description="Margin needed to switch; default: the model's (0.2).")
        ] = None,
        settle_s: Annotated[float, Field(ge=0, le=60, description="Seconds after an apply left out.")] = 2.0,
        roles: Annotated[
            dict[Literal["app", "other"], Annotated[str, Field(max_length=200)]] | None,
            Field(
                description="The cgroups in the signatures that play 'app' (whose performance matters) and "
                "'other' (the co-runner it trades against); default: the model's training names."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, RankResult]:
        """Rank configurations by their performance signatures when no app metric (latency, throughput) is
        reported. Give 2-32 candidates, each with the `txid` that applied it (simplest) or a full signature.
        Returns the order, margins over the incumbent in -1..1, the archetype used ('novel: global fallback'
        when unlike the training data), and a recommendation: keep the incumbent unless margin >= delta."""

        def run() -> RankResult:
            return rank_candidates(
                service,
                holder.get(),
                candidates,
                incumbent,
                delta,
                settle_s,
                {str(k): v for k, v in (roles or {}).items()},
            )

        return ok(await anyio.to_thread.run_sync(run))

    _ = rank_configs
    return holder
