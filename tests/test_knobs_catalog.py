"""The catalog: loads, is schema-checked, and a broken file names its file, field and rule."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from lumos_mcp.errors import CatalogLoadError, InvalidParameterError, UnknownKnobError
from lumos_mcp.knobs import default_catalog, load_catalog
from lumos_mcp.knobs.catalog import CATALOG_FILE

GOOD_ENTRY = """
[[knob]]
id = "vm.swappiness"
group = "vm"
kind = "int"
min = 0
max = 200
description = "How readily the kernel swaps anonymous memory versus dropping page cache."
paths = [{ files = ["proc/sys/vm/swappiness"] }]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_shipped_catalog_loads_and_every_knob_has_paths_and_a_description() -> None:
    catalog = load_catalog()
    assert len(catalog) == len(tomllib.loads(CATALOG_FILE.read_text())["knob"])
    for spec in catalog:
        assert spec.paths
        assert len(spec.description) >= 40
        if spec.kind == "int":
            assert spec.min is not None
            assert spec.max is not None


def test_a_minimal_catalog_file_loads(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, GOOD_ENTRY))
    assert [s.id for s in catalog] == ["vm.swappiness"]


@pytest.mark.parametrize(
    ("mutation", "field", "rule"),
    [
        (('paths = [{ files = ["proc/sys/vm/swappiness"] }]', ""), "knob/0", "required"),
        (('kind = "int"', 'kind = "float"'), "knob/0/kind", "enum"),
        (("proc/sys/vm/swappiness", "proc/sys/../../etc/shadow"), "knob/0/paths/0/files/0", "not"),
        (("proc/sys/vm/swappiness", "/etc/shadow"), "knob/0/paths/0/files/0", "pattern"),
        (("min = 0", 'min = "zero"'), "knob/0/min", "type"),
        (('group = "vm"', 'group = "vm"\ncolour = "red"'), "knob/0", "additionalProperties"),
        (("min = 0", "min = 300"), "vm.swappiness/min", "range"),
        (('id = "vm.swappiness"', 'id = "Vm.Swappiness"'), "knob/0/id", "pattern"),
    ],
)
def test_a_broken_catalog_names_the_file_the_field_and_the_rule(
    tmp_path: Path, mutation: tuple[str, str], field: str, rule: str
) -> None:
    old, new = mutation
    assert old in GOOD_ENTRY
    path = _write(tmp_path, GOOD_ENTRY.replace(old, new))
    with pytest.raises(CatalogLoadError) as info:
        load_catalog(path)
    assert info.value.fields == {"file": str(path), "field": field, "rule": rule}
    assert info.value.code == "catalog_invalid"


def test_duplicate_knob_ids_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_ENTRY + GOOD_ENTRY)
    with pytest.raises(CatalogLoadError) as info:
        load_catalog(path)
    assert info.value.fields["rule"] == "unique"


def test_a_catalog_that_is_not_toml_gives_a_catalog_error(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_ENTRY + "\n[[knob]\nid = ")
    with pytest.raises(CatalogLoadError) as info:
        load_catalog(path)
    assert info.value.fields["file"] == str(path)
    assert info.value.fields["rule"] == "toml"


def test_a_missing_catalog_file_gives_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogLoadError) as info:
        load_catalog(tmp_path / "absent.toml")
    assert info.value.fields["rule"] == "readable"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        # a two-file path under a one-file codec would fail only at write time
        ('files = ["proc/sys/vm/swappiness"]', 'files = ["proc/sys/vm/swappiness", "proc/sys/vm/x"]', "paths/0"),
        # a cpu_max codec on an int knob would fail only at write time
        ('files = ["proc/sys/vm/swappiness"]', 'files = ["proc/sys/vm/swappiness"], codec = "cpu_max_v2"', "paths/0"),
        # a template id whose parameter is not declared is matched by nothing
        ('id = "vm.swappiness"', 'id = "block.{dev}.swappiness"', "param"),
    ],
)
def test_a_catalog_entry_whose_parts_do_not_fit_together_is_refused(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    path = _write(tmp_path, GOOD_ENTRY.replace(old, new))
    with pytest.raises(CatalogLoadError) as info:
        load_catalog(path)
    assert info.value.fields["field"].endswith(field)
    assert info.value.fields["rule"] == "consistent"


def test_lookup_finds_plain_and_parametrised_knobs() -> None:
    catalog = default_catalog()
    assert catalog.lookup("vm.swappiness").param is None
    ref = catalog.lookup("block.vda.scheduler")
    assert (ref.spec.id, ref.param) == ("block.{dev}.scheduler", "vda")
    ref = catalog.lookup("cgroup.system.slice/app.cpu_weight")
    assert ref.param == "system.slice/app"
    assert ref.fill("sys/fs/cgroup/{name}/cpu.weight") == "sys/fs/cgroup/system.slice/app/cpu.weight"


@pytest.mark.parametrize("knob", ["vm.swapiness", "", "proc/sys/vm/swappiness", "vm", None, 42, "x" * 201, "vm.\x00"])
def test_ids_outside_the_catalog_are_unknown(knob: object) -> None:
    with pytest.raises(UnknownKnobError):
        default_catalog().lookup(knob)


@pytest.mark.parametrize(
    "knob",
    [
        "block.../scheduler",
        "block.vda/../sda.scheduler",
        "block.VDA.scheduler",
        "cgroup.../cpu_weight",
        "cgroup.a/../../etc.cpu_weight",
        "cgroup./etc.cpu_weight",
        "cgroup.a//b.cpu_weight",
        "cgroup.batch\x00.cpu_weight",
        "cgroup.bätch.cpu_weight",
        "cgroup." + "a" * 65 + ".cpu_weight",
    ],
)
def test_parameters_that_fail_their_pattern_are_refused(knob: str) -> None:
    with pytest.raises((InvalidParameterError, UnknownKnobError)):
        default_catalog().lookup(knob)
