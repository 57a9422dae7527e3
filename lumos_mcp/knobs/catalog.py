"""The catalog: every knob lumos-mcp knows, loaded from data and checked against a schema."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from lumos_mcp.errors import CatalogLoadError, InvalidParameterError, UnknownKnobError
from lumos_mcp.knobs.spec import KnobRef, KnobSpec, ParamSpec, PathCandidate, parse_version
from lumos_mcp.resources import schema_path

CATALOG_FILE = Path(__file__).with_name("catalog.toml")


class Catalog:
    """Lookup of knob ids, including parametrised ones (``block.vda.scheduler``)."""

    def __init__(self, specs: list[KnobSpec]) -> None:
        self._plain = {s.id: s for s in specs if not s.parametrised}
        self._templates: list[tuple[re.Pattern[str], KnobSpec]] = []
        for spec in specs:
            if spec.param is not None:
                head, _, tail = spec.id.partition("{" + spec.param.name + "}")
                self._templates.append((re.compile(re.escape(head) + "(?P<p>.+)" + re.escape(tail) + r"\Z"), spec))
        self.specs = tuple(specs)

    def __iter__(self) -> Iterator[KnobSpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def spec(self, spec_id: str) -> KnobSpec:
        """A spec by its catalog id (templates as written: ``"block.{dev}.scheduler"``).

        Raises:
            UnknownKnobError: no such entry.
        """
        for spec in self.specs:
            if spec.id == spec_id:
                return spec
        raise UnknownKnobError(knob=spec_id)

    def lookup(self, knob_id: object) -> KnobRef:
        """The concrete knob named ``knob_id``.

        Raises:
            UnknownKnobError: the id is not in the catalog (knob ids come from the catalog only).
            InvalidParameterError: a parametrised knob's parameter fails its strict pattern.
        """
        if not isinstance(knob_id, str) or not knob_id or len(knob_id) > 200 or "\x00" in knob_id:
            raise UnknownKnobError(knob=str(knob_id)[:200])
        spec = self._plain.get(knob_id)
        if spec is not None:
            return KnobRef(spec=spec, id=knob_id)
        for pattern, spec in self._templates:
            m = pattern.match(knob_id)
            if m is not None and spec.param is not None:
                param = m.group("p")
                if not spec.param.matches(param):
                    raise InvalidParameterError(f"must match {spec.param.pattern}", knob=knob_id, parameter=param[:100])
                return KnobRef(spec=spec, id=knob_id, param=param)
        raise UnknownKnobError(knob=knob_id)


def _version(data: dict[str, Any], key: str) -> tuple[int, int, int] | None:
    text = data.get(key)
    return parse_version(text) if isinstance(text, str) else None


def _spec(entry: dict[str, Any]) -> KnobSpec:
    param = entry.get("param")
    return KnobSpec(
        id=entry["id"],
        group=entry["group"],
        kind=entry["kind"],
        description=entry["description"],
        unit=entry.get("unit"),
        min=entry.get("min"),
        max=entry.get("max"),
        choices=tuple(entry.get("choices", ())),
        note=entry.get("note", ""),
        param=ParamSpec(name=param["name"], pattern=param["pattern"], exists=dict(param.get("exists", {})))
        if param
        else None,
        paths=tuple(
            PathCandidate(
                files=tuple(p["files"]),
                codec=p.get("codec", "plain"),
                since=_version(p, "since"),
                until=_version(p, "until"),
                cgroup=p.get("cgroup"),
            )
            for p in entry["paths"]
        ),
    )


# Each file codec's kind and number of files; the schema alone cannot tie these together, and a
# mismatch would otherwise surface only when a knob is written.
_CODEC_SHAPE: dict[str, tuple[str | None, int]] = {
    "plain": (None, 1),
    "weight_as_shares": ("int", 1),
    "cpu_max_v1": ("cpu_max", 2),
    "cpu_max_v2": ("cpu_max", 1),
    "task": (None, 1),
}


def _inconsistency(entry: dict[str, Any]) -> tuple[str, str] | None:
    """Where (field) and why an entry's parts do not fit together, or None."""
    param = entry.get("param")
    placeholders = set(re.findall(r"\{([a-z]+)\}", entry["id"]))
    if placeholders != ({param["name"]} if param else set()):
        return "param", f"id placeholders {sorted(placeholders)} do not match the declared param"
    for n, p in enumerate(entry["paths"]):
        kind, nfiles = _CODEC_SHAPE[p.get("codec", "plain")]
        if kind is not None and kind != entry["kind"]:
            return f"paths/{n}", f"codec {p.get('codec')!r} needs kind {kind!r}"
        if len(p["files"]) != nfiles:
            return f"paths/{n}", f"codec {p.get('codec', 'plain')!r} writes {nfiles} file(s)"
    return None


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and schema-check a catalog file (the shipped one by default).

    Raises:
        CatalogLoadError: the file is unreadable, is not TOML, breaks the catalog schema, or an
            entry's parts do not fit together (names the file, field and rule).
    """
    file = path or CATALOG_FILE
    try:
        data = tomllib.loads(file.read_text())
    except OSError as e:
        raise CatalogLoadError(e.strerror or str(e), file=str(file), field="", rule="readable") from e
    except tomllib.TOMLDecodeError as e:
        raise CatalogLoadError(str(e), file=str(file), field="", rule="toml") from e
    schema = orjson.loads(schema_path("catalog.schema.json").read_bytes())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        raise CatalogLoadError(
            error.message, file=str(file), field="/".join(str(p) for p in error.absolute_path), rule=error.validator
        )
    ids = [k["id"] for k in data["knob"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CatalogLoadError(f"duplicate ids {duplicates}", file=str(file), field="knob/id", rule="unique")
    for entry in data["knob"]:
        if "min" in entry and "max" in entry and entry["min"] > entry["max"]:
            raise CatalogLoadError("min above max", file=str(file), field=f"{entry['id']}/min", rule="range")
        problem = _inconsistency(entry)
        if problem is not None:
            where, why = problem
            raise CatalogLoadError(why, file=str(file), field=f"{entry['id']}/{where}", rule="consistent")
    return Catalog([_spec(entry) for entry in data["knob"]])


@cache
def default_catalog() -> Catalog:
    """The shipped catalog, loaded once."""
    return load_catalog()
