"""Loading policy files: TOML, then ``schemas/policy.schema.json``, then checks against the catalog.

Every failure is a :class:`PolicyLoadError` naming the file, the field (a JSON path such as
``knobs/vm.swappiness/max``) and the rule it breaks (a JSON Schema keyword such as
``maximum``, or one of the semantic rules below).

Semantic rules: ``catalog_knob`` (a key is not a catalog knob, a concrete instance or a glob
over a parametrised knob's parameter), ``required_for_kind`` (int knobs need ``min`` and
``max``), ``applies_to_kind`` (a field that means nothing for the knob's kind),
``hard_range`` (a bound outside the catalog's hard range), ``min_le_max``, ``choices`` (an
allowed value the knob cannot take), ``cross_knob`` (a cross rule names something other than
a concrete int knob of the catalog), ``envelope`` (a speculation entry no knob rule covers, or
wider than it), ``max_confirm_within_s`` (a deadline above the policy's longest) and
``signature_path`` (a guard's metric is not a numeric path of the full telemetry signature).
"""

from __future__ import annotations

import json
import tomllib
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pydantic

from lumos_mcp.errors import InvalidParameterError, PolicyFileMissingError, PolicyLoadError, UnknownKnobError
from lumos_mcp.guards import check_path
from lumos_mcp.knobs import Catalog, Kind, KnobSpec, default_catalog
from lumos_mcp.policy.model import Bounds, KnobRule, Policy, is_glob, specificity
from lumos_mcp.resources import policy_path, schema_path

_INT_ONLY = ("min", "max", "max_step_ratio")
_CPU_MAX_ONLY = ("allow_unlimited", "min_quota_ratio")
_ALLOW_KINDS: tuple[Kind, ...] = ("choice", "bool", "cpulist")


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path("policy.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def load_policy(path: Path | str, catalog: Catalog | None = None) -> Policy:
    """Load a policy file: a path, or the short name of a shipped policy (``"default"``).

    Args:
        path: a ``.toml`` file, or ``"default"`` / ``"readonly"`` / ``"latency"``.
        catalog: the knob catalog to check against; the shipped one by default.

    Raises:
        PolicyLoadError: the file is missing, is not TOML, breaks the schema or a semantic
            rule; the error names the file, the field and the rule.
    """
    file = Path(path)
    if not file.suffix and not file.exists() and "/" not in str(path):
        file = policy_path(str(path))
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PolicyFileMissingError(
            "give the path of a .toml file, or a shipped policy: default, latency or readonly",
            file=str(file),
            field="",
            rule="exists",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(str(exc), file=str(file), field="", rule="readable") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyLoadError(str(exc), file=str(file), field="", rule="toml") from exc
    return parse_policy(data, catalog=catalog, file=str(file))


def parse_policy(data: dict[str, Any], *, catalog: Catalog | None = None, file: str = "<data>") -> Policy:
    """Check a policy given as data (the parsed TOML) and build the :class:`Policy`.

    Raises:
        PolicyLoadError: the data breaks the schema or a semantic rule (names ``file``, the
            field and the rule).
    """
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        raise PolicyLoadError(
            error.message, file=file, field="/".join(str(p) for p in error.absolute_path), rule=str(error.validator)
        )
    try:
        policy = Policy.model_validate(data)
    except pydantic.ValidationError as exc:  # the schema should have caught it; say where anyway
        first = exc.errors()[0]
        raise PolicyLoadError(
            first["msg"], file=file, field="/".join(str(p) for p in first["loc"]), rule=first["type"]
        ) from exc
    _Checker(policy, catalog or default_catalog(), file).run()
    return policy


class _Checker:
    """The semantic checks: everything the schema cannot know because it needs the catalog."""

    def __init__(self, policy: Policy, catalog: Catalog, file: str) -> None:
        self.policy = policy
        self.catalog = catalog
        self.file = file
        self.kinds: dict[str, Kind] = {}
        self.spec_ids: dict[str, str] = {}

    def fail(self, detail: str, field: str, rule: str) -> PolicyLoadError:
        return PolicyLoadError(detail, file=self.file, field=field, rule=rule)

    def run(self) -> None:
        g = self.policy.global_
        if g.confirm_within_s > g.max_confirm_within_s:
            raise self.fail(
                f"default deadline {g.confirm_within_s} s is above max_confirm_within_s {g.max_confirm_within_s} s",
                "global/confirm_within_s",
                "max_confirm_within_s",
            )
        for key, rule in self.policy.knobs.items():
            spec = self.resolve(key, f"knobs/{key}")
            self.kinds[key] = spec.kind
            self.spec_ids[key] = spec.id
            self.check_bounds(spec, rule, f"knobs/{key}")
            if rule.approval == "above_step" and spec.kind != "int":
                raise self.fail(
                    f"approval 'above_step' needs a step, and only int knobs have one ({key} is {spec.kind})",
                    f"knobs/{key}/approval",
                    "applies_to_kind",
                )
        for i, cross in enumerate(self.policy.cross):
            for side in ("left", "right"):
                self.check_cross_knob(getattr(cross, side), f"cross/{i}/{side}")
            if cross.left == cross.right:
                raise self.fail("a cross rule compares two different knobs", f"cross/{i}/right", "cross_knob")
        speculation = self.policy.speculation
        spec_confirm = speculation.confirm_within_s
        # The section's default only matters once it is set or some envelope entry uses it.
        in_use = "confirm_within_s" in speculation.model_fields_set or bool(speculation.knobs)
        if in_use and spec_confirm > g.max_confirm_within_s:
            raise self.fail(
                f"{spec_confirm} s is above max_confirm_within_s {g.max_confirm_within_s} s",
                "speculation/confirm_within_s",
                "max_confirm_within_s",
            )
        for key, env in self.policy.speculation.knobs.items():
            field = f"speculation/knobs/{key}"
            spec = self.resolve(key, field)
            self.kinds[key] = spec.kind
            self.check_bounds(spec, env, field)
            if env.confirm_within_s is not None and env.confirm_within_s > g.max_confirm_within_s:
                raise self.fail(
                    f"{env.confirm_within_s} s is above max_confirm_within_s {g.max_confirm_within_s} s",
                    f"{field}/confirm_within_s",
                    "max_confirm_within_s",
                )
            self.check_envelope(key, env, spec, field)
        for i, guard in enumerate(self.policy.guards.rules):
            reason = check_path(guard.metric)
            if reason is not None:
                raise self.fail(reason, f"guards/rules/{i}/metric", "signature_path")
        self.policy._kinds = dict(self.kinds)

    # ------------------------------------------------------------------ knob keys
    def resolve(self, key: str, field: str) -> KnobSpec:
        """The catalog spec a knob key names: a plain id, a concrete instance or a parameter glob."""
        if not is_glob(key):
            try:
                return self.catalog.lookup(key).spec
            except (UnknownKnobError, InvalidParameterError) as exc:
                raise self.fail(f"{key!r} is not a catalog knob: {exc}", field, "catalog_knob") from exc
        for spec in self.catalog:
            if spec.param is None:
                continue
            head, _, tail = spec.id.partition("{" + spec.param.name + "}")
            middle = key[len(head) : len(key) - len(tail)] if len(key) > len(head) + len(tail) else ""
            if key.startswith(head) and key.endswith(tail) and is_glob(middle) and "/" not in head + tail:
                return spec
        raise self.fail(
            f"{key!r} is not a catalog knob: globs may only stand for the parameter of a parametrised knob, "
            "as in 'cgroup.*.cpu_weight' or 'block.*.scheduler'",
            field,
            "catalog_knob",
        )

    def check_cross_knob(self, knob: str, field: str) -> None:
        try:
            spec = self.catalog.lookup(knob).spec
        except (UnknownKnobError, InvalidParameterError) as exc:
            raise self.fail(f"{knob!r} is not a catalog knob: {exc}", field, "cross_knob") from exc
        if spec.kind != "int":
            raise self.fail(f"cross rules compare int knobs; {knob} is {spec.kind}", field, "cross_knob")

    # ------------------------------------------------------------------ bounds
    def check_bounds(self, spec: KnobSpec, rule: Bounds, field: str) -> None:
        set_fields = rule.model_fields_set
        misplaced = [
            name
            for name in set_fields
            if (name in _INT_ONLY and spec.kind != "int")
            or (name in _CPU_MAX_ONLY and spec.kind != "cpu_max")
            or (name == "allow" and spec.kind not in _ALLOW_KINDS)
        ]
        if misplaced:
            name = sorted(misplaced)[0]
            raise self.fail(
                f"{name} does not apply to a {spec.kind} knob ({spec.id})", f"{field}/{name}", "applies_to_kind"
            )
        if spec.kind == "int":
            self.check_int_bounds(spec, rule, field)
        if rule.allow is not None:
            self.check_allow(spec, rule.allow, field)
        if rule.min_quota_ratio is not None and rule.min_quota_ratio > 1024:
            raise self.fail(
                "min_quota_ratio is quota / period in CPUs; above 1024 is no limit",
                f"{field}/min_quota_ratio",
                "hard_range",
            )

    def check_int_bounds(self, spec: KnobSpec, rule: Bounds, field: str) -> None:
        for name in ("min", "max"):
            if getattr(rule, name) is None:
                raise self.fail(
                    f"int knob {spec.id} needs explicit min and max in a policy", f"{field}/{name}", "required_for_kind"
                )
        assert rule.min is not None and rule.max is not None  # checked just above
        if rule.min > rule.max:
            raise self.fail(f"min {rule.min} is above max {rule.max}", f"{field}/min", "min_le_max")
        if spec.min is not None and rule.min < spec.min:
            raise self.fail(
                f"min {rule.min} is below the hard minimum {spec.min} of {spec.id}", f"{field}/min", "hard_range"
            )
        if spec.max is not None and rule.max > spec.max:
            raise self.fail(
                f"max {rule.max} is above the hard maximum {spec.max} of {spec.id}", f"{field}/max", "hard_range"
            )

    def check_allow(self, spec: KnobSpec, allow: tuple[str | bool, ...], field: str) -> None:
        for i, value in enumerate(allow):
            wrong_type = (spec.kind == "bool") != isinstance(value, bool)
            if wrong_type or (spec.kind == "choice" and spec.choices and value not in spec.choices):
                can_take = "true or false" if spec.kind == "bool" else (list(spec.choices) or "a word")
                raise self.fail(
                    f"{value!r} is not a value {spec.id} can take ({can_take})", f"{field}/allow/{i}", "choices"
                )

    # ------------------------------------------------------------------ speculation
    def check_envelope(self, key: str, env: Bounds, spec: KnobSpec, field: str) -> None:
        """An envelope entry must sit inside a knob rule: the speculator never gets more than the agent."""
        candidates = [key] if key in self.policy.knobs else []
        candidates += sorted((k for k in self.policy.knobs if is_glob(k) and fnmatchcase(key, k)), key=specificity)
        covering = [k for k in candidates if self.spec_ids.get(k) == spec.id]
        if not covering:
            raise self.fail(f"no entry under 'knobs' covers {key}: the envelope must lie inside one", field, "envelope")
        _inside(self, self.policy.knobs[covering[0]], env, field)


def _inside(checker: _Checker, outer: KnobRule, inner: Bounds, field: str) -> None:
    if outer.min is not None and inner.min is not None and inner.min < outer.min:
        raise checker.fail(
            f"envelope min {inner.min} is below the knob rule's min {outer.min}", f"{field}/min", "envelope"
        )
    if outer.max is not None and inner.max is not None and inner.max > outer.max:
        raise checker.fail(
            f"envelope max {inner.max} is above the knob rule's max {outer.max}", f"{field}/max", "envelope"
        )
    if outer.allow is not None and inner.allow is not None:
        extra = [v for v in inner.allow if v not in outer.allow]
        if extra:
            raise checker.fail(f"envelope allows {extra} which the knob rule does not", f"{field}/allow", "envelope")
    if inner.allow_unlimited and not outer.allow_unlimited:
        raise checker.fail("envelope allows 'max' but the knob rule does not", f"{field}/allow_unlimited", "envelope")
