"""The knob catalog: one spec per logical knob, with its kernel paths, type, unit and hard range."""

from lumos_mcp.knobs.catalog import Catalog, default_catalog, load_catalog
from lumos_mcp.knobs.codec import normalize
from lumos_mcp.knobs.spec import Kind, KnobRef, KnobSpec, ParamSpec, PathCandidate, Value

__all__ = [
    "Catalog",
    "Kind",
    "KnobRef",
    "KnobSpec",
    "ParamSpec",
    "PathCandidate",
    "Value",
    "default_catalog",
    "load_catalog",
    "normalize",
]
