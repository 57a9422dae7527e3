"""Codecs: normalisation, file encodings and their round trips (property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumos_mcp.errors import InvalidValueError
from lumos_mcp.knobs import KnobSpec, PathCandidate, default_catalog, normalize
from lumos_mcp.knobs import codec as codec_mod

CATALOG = default_catalog()
INT_SPECS = [s for s in CATALOG if s.kind == "int"]
# every (spec, codec) pair the catalog can write with
SPEC_CODECS = sorted({(s.id, p.codec) for s in CATALOG for p in s.paths})

CPULIST = KnobSpec(
    id="test.cpus",
    group="sched",
    kind="cpulist",
    description="a cpu list knob for tests",
    paths=(PathCandidate(files=("proc/x",), codec="plain"),),
)
CPU_MAX = CATALOG.spec("cgroup.{name}.cpu_max")
WEIGHT = CATALOG.spec("cgroup.{name}.cpu_weight")
IDLE = CATALOG.spec("cgroup.{name}.cpu_idle")
THP = CATALOG.spec("thp.enabled")

# values no knob accepts, whatever its kind
ALIEN_VALUES = st.one_of(
    st.none(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(min_size=1, max_size=8),
)


def _canonical_values(spec: KnobSpec) -> st.SearchStrategy[object]:
    if spec.kind == "int":
        return st.integers(min_value=spec.min, max_value=spec.max)
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind == "choice":
        return st.sampled_from(spec.choices or ("none", "mq-deadline", "bfq"))
    if spec.kind == "cpulist":
        return st.lists(st.integers(0, 63), min_size=1, max_size=8).map(lambda cpus: ",".join(map(str, cpus)))
    if spec.kind == "cpu_max":
        return st.one_of(
            st.builds(lambda p: f"max {p}", st.integers(1000, 1_000_000)),
            st.builds(lambda q, p: f"{q} {p}", st.integers(1000, 10**9), st.integers(1000, 1_000_000)),
        )
    raise AssertionError(spec.kind)


@pytest.mark.parametrize(("spec_id", "codec"), SPEC_CODECS)
@given(data=st.data())
def test_every_normalised_value_round_trips_through_encode_and_decode(
    spec_id: str, codec: str, data: st.DataObject
) -> None:
    spec = CATALOG.spec(spec_id)
    value = normalize(spec, data.draw(_canonical_values(spec)))
    texts = codec_mod.encode(codec, spec, value)
    # the kernel shows what it was given followed by a newline
    assert codec_mod.decode(codec, spec, [t + "\n" for t in texts]) == value
    assert normalize(spec, value) == value  # normalisation is idempotent


@pytest.mark.parametrize("spec", INT_SPECS, ids=lambda s: s.id)
@given(data=st.data())
def test_int_knobs_refuse_values_outside_the_hard_range(spec: KnobSpec, data: st.DataObject) -> None:
    assert spec.min is not None
    assert spec.max is not None
    value = data.draw(st.one_of(st.integers(max_value=spec.min - 1), st.integers(min_value=spec.max + 1)))
    with pytest.raises(InvalidValueError) as info:
        normalize(spec, value)
    assert info.value.fields["knob"] == spec.id
    with pytest.raises(InvalidValueError):
        normalize(spec, str(value))


@pytest.mark.parametrize("spec", list(CATALOG), ids=lambda s: s.id)
@given(value=ALIEN_VALUES)
def test_values_of_the_wrong_type_raise_invalid_value(spec: KnobSpec, value: object) -> None:
    with pytest.raises(InvalidValueError):
        normalize(spec, value)


@pytest.mark.parametrize("spec", [*list(CATALOG), CPULIST], ids=lambda s: s.id)
@given(text=st.text(max_size=24))
def test_any_text_is_either_normalised_or_refused_with_invalid_value(spec: KnobSpec, text: str) -> None:
    try:
        value = normalize(spec, text)
    except InvalidValueError:
        return
    # what is accepted is plain ASCII the kernel can parse, and stable
    assert str(value).isascii()
    assert normalize(spec, value) == value


@pytest.mark.parametrize("text", ["²", "١٢", "+-5", "--1", "5-", "0x10", "1e3", "1_000", " ", ""])
def test_int_knobs_refuse_numbers_python_would_bend(text: str) -> None:
    with pytest.raises(InvalidValueError):
        normalize(CATALOG.spec("vm.swappiness"), text)


def test_int_knobs_accept_an_integer_or_its_decimal_text() -> None:
    spec = CATALOG.spec("kernel.sched_rt_runtime_us")
    assert normalize(spec, 950000) == 950000
    assert normalize(spec, " 950000\n") == 950000
    assert normalize(spec, "-1") == -1
    assert normalize(spec, "+10") == 10
    with pytest.raises(InvalidValueError):
        normalize(spec, True)  # a bool is not an int here


@pytest.mark.parametrize(
    ("given_value", "canonical"),
    [("3,1-2,0", "0-3"), ("0-3,6", "0-3,6"), (" 5 ", "5"), ("0,2,4,5,6", "0,2,4-6"), ("7-7", "7"), ("1,1,1", "1")],
)
def test_cpulist_is_normalised_to_sorted_ranges(given_value: str, canonical: str) -> None:
    assert normalize(CPULIST, given_value) == canonical


@pytest.mark.parametrize("bad", ["", "3-1", "a", "0-", "-1", "1,,2", "0-4096", "²", 5, None])
def test_malformed_cpulists_are_refused(bad: object) -> None:
    with pytest.raises(InvalidValueError):
        normalize(CPULIST, bad)


@given(cpus=st.sets(st.integers(0, 4095), min_size=1, max_size=40))
def test_cpulist_round_trips_any_set_of_cpus(cpus: set[int]) -> None:
    text = ",".join(str(c) for c in sorted(cpus, reverse=True))
    canonical = normalize(CPULIST, text)
    assert isinstance(canonical, str)
    assert codec_mod.decode("plain", CPULIST, [canonical + "\n"]) == canonical
    expanded: set[int] = set()
    for part in canonical.split(","):
        lo, _, hi = part.partition("-")
        expanded.update(range(int(lo), int(hi or lo) + 1))
    assert expanded == cpus


@pytest.mark.parametrize(
    ("given_value", "canonical"),
    [
        ("max", "max 100000"),
        ("max 50000", "max 50000"),
        ("-1", "max 100000"),
        ("-1 20000", "max 20000"),
        (50000, "50000 100000"),
        ("50000", "50000 100000"),
        ("  200000   1000000 ", "200000 1000000"),
    ],
)
def test_cpu_max_accepts_its_forms(given_value: object, canonical: str) -> None:
    assert normalize(CPU_MAX, given_value) == canonical


@pytest.mark.parametrize(
    "bad", ["", "max max", "1 2 3", "999 100000", "50000 999", "50000 1000001", "half", "50000 ²", True, 2.5, None]
)
def test_malformed_cpu_max_is_refused(bad: object) -> None:
    with pytest.raises(InvalidValueError):
        normalize(CPU_MAX, bad)


def test_cpu_max_v1_splits_into_period_then_quota_and_back() -> None:
    assert codec_mod.encode("cpu_max_v1", CPU_MAX, "50000 200000") == ["200000", "50000"]
    assert codec_mod.encode("cpu_max_v1", CPU_MAX, "max 100000") == ["100000", "-1"]
    assert codec_mod.decode("cpu_max_v1", CPU_MAX, ["100000\n", "-1\n"]) == "max 100000"
    assert codec_mod.decode("cpu_max_v2", CPU_MAX, ["max 100000\n"]) == "max 100000"


def test_weight_to_shares_round_trips_for_every_weight() -> None:
    for weight in range(1, 10001):
        shares = codec_mod.shares_from_weight(weight)
        assert 2 <= shares <= 262144
        assert codec_mod.weight_from_shares(shares) == weight
        assert codec_mod.decode("weight_as_shares", WEIGHT, codec_mod.encode("weight_as_shares", WEIGHT, weight)) == (
            weight
        )
    assert codec_mod.shares_from_weight(100) == 1024


@given(shares=st.integers(2, 262144))
def test_any_shares_value_reads_as_a_weight_in_range(shares: int) -> None:
    assert 1 <= codec_mod.weight_from_shares(shares) <= 10000


@pytest.mark.parametrize(
    ("given_value", "canonical"),
    [(True, True), (False, False), (1, True), (0, False), ("on", True), ("OFF", False), (" yes ", True), ("n", False)],
)
def test_bool_knobs_accept_the_usual_forms(given_value: object, canonical: bool) -> None:
    assert normalize(IDLE, given_value) is canonical


@pytest.mark.parametrize("bad", [2, -1, "2", "maybe", "", 1.0, None])
def test_bool_knobs_refuse_other_values(bad: object) -> None:
    with pytest.raises(InvalidValueError):
        normalize(IDLE, bad)


def test_bool_encodes_as_one_or_zero() -> None:
    assert codec_mod.encode("plain", IDLE, True) == ["1"]
    assert codec_mod.encode("plain", IDLE, False) == ["0"]


@pytest.mark.parametrize("bad", ["sometimes", "[never]", "never always", "", "névér", 1])
def test_choice_knobs_refuse_anything_but_one_listed_word(bad: object) -> None:
    with pytest.raises(InvalidValueError):
        normalize(THP, bad)


def test_choice_file_decodes_to_its_bracketed_word_and_restores_by_it() -> None:
    assert codec_mod.decode("plain", THP, ["always [madvise] never\n"]) == "madvise"
    assert codec_mod.restorable("always [madvise] never\n") == "madvise"
    assert codec_mod.restorable("60\n") == "60"
