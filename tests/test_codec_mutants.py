"""Gaps of the codecs that mutation testing found: the exact edges of each accepted range,
the decoders' handling of kernel text, and the errors named for unknown codecs."""

from __future__ import annotations

import pytest

from lumos_mcp.errors import InvalidValueError
from lumos_mcp.knobs import KnobSpec, PathCandidate, default_catalog, normalize
from lumos_mcp.knobs import codec as codec_mod

CATALOG = default_catalog()
CPU_MAX = CATALOG.spec("cgroup.{name}.cpu_max")
WEIGHT = CATALOG.spec("cgroup.{name}.cpu_weight")
IDLE = CATALOG.spec("cgroup.{name}.cpu_idle")
THP = CATALOG.spec("thp.enabled")
SWAPPINESS = CATALOG.spec("vm.swappiness")


def spec(kind: str, **extra: object) -> KnobSpec:
    return KnobSpec(
        id=f"test.{kind}",
        group="vm",
        kind=kind,  # type: ignore[arg-type]
        description="a knob for tests",
        paths=(PathCandidate(files=("proc/x",), codec="plain"),),
        **extra,  # type: ignore[arg-type]
    )


def reason(value: object, knob: KnobSpec) -> InvalidValueError:
    with pytest.raises(InvalidValueError) as info:
        normalize(knob, value)
    return info.value


# --------------------------------------------------------------------------- int
@pytest.mark.parametrize(("value", "ok"), [(-1, False), (0, True), (200, True), (201, False)])
def test_int_hard_range_edges_are_inclusive(value: int, ok: bool) -> None:
    knob = spec("int", min=0, max=200)
    if ok:
        assert normalize(knob, value) == value
        assert normalize(knob, f" {value}\n") == value
    else:
        assert reason(value, knob).fields["knob"] == "test.int"


def test_an_int_knob_without_bounds_takes_any_integer() -> None:
    knob = spec("int")
    assert normalize(knob, -(10**12)) == -(10**12)
    assert normalize(knob, "+7") == 7


def test_an_invalid_value_error_names_the_knob_and_the_value() -> None:
    err = reason("12a", SWAPPINESS)
    assert (err.fields["knob"], err.fields["value"]) == ("vm.swappiness", "12a")
    err = reason([1], SWAPPINESS)
    assert err.fields["value"] == "[1]"  # not JSON-scalar: shown as its repr


# --------------------------------------------------------------------------- cpu lists
@pytest.mark.parametrize(("value", "canonical"), [("4095", "4095"), ("4094-4095", "4094-4095"), ("3-3", "3")])
def test_cpulist_accepts_cpus_up_to_4095(value: str, canonical: str) -> None:
    assert normalize(spec("cpulist"), value) == canonical


@pytest.mark.parametrize("bad", ["4096", "0-4096", "3-2", "1,", "-", "1-", "a-3", 3])
def test_cpulist_refuses_cpus_beyond_4095_reversed_ranges_and_bad_parts(bad: object) -> None:
    reason(bad, spec("cpulist"))


@pytest.mark.parametrize(
    ("cpus", "text"),
    [([], ""), ([5], "5"), ([0, 1], "0-1"), ([0, 2], "0,2"), ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), ([3, 4, 9], "3-4,9")],
)
def test_format_cpulist_writes_runs_and_singles(cpus: list[int], text: str) -> None:
    assert codec_mod.format_cpulist(cpus) == text


def test_decoding_an_empty_cpulist_file_reads_cpu_zero() -> None:
    assert codec_mod.decode("plain", spec("cpulist"), ["\n"]) == "0"
    assert codec_mod.decode("plain", spec("cpulist"), [" 0-3,5\n"]) == "0-3,5"


# --------------------------------------------------------------------------- cpu_max
@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("1000 1000", "1000 1000"),
        ("1000 1000000", "1000 1000000"),
        ("max 1000", "max 1000"),
        ("max 1000000", "max 1000000"),
        ("1000", "1000 100000"),
        ("-1", "max 100000"),
        ("0001000 0100000", "1000 100000"),
    ],
)
def test_cpu_max_accepts_the_edges_of_its_ranges(value: str, canonical: str) -> None:
    assert normalize(CPU_MAX, value) == canonical


@pytest.mark.parametrize("bad", ["999", "999 100000", "1000 999", "1000 1000001", "max 999", "-2", "1000 -1", ""])
def test_cpu_max_refuses_values_just_past_its_ranges(bad: str) -> None:
    reason(bad, CPU_MAX)


def test_cpu_max_v1_encodes_a_limit_as_its_quota_and_reads_minus_one_as_max() -> None:
    assert codec_mod.encode("cpu_max_v1", CPU_MAX, "2000 50000") == ["50000", "2000"]
    assert codec_mod.decode("cpu_max_v1", CPU_MAX, ["50000\n", "2000\n"]) == "2000 50000"
    assert codec_mod.decode("cpu_max_v1", CPU_MAX, ["50000 extra\n", "-1 extra\n"]) == "max 50000"
    assert codec_mod.encode("cpu_max_v2", CPU_MAX, "max 100000") == ["max 100000"]
    assert codec_mod.decode("cpu_max_v2", CPU_MAX, [" 2000 50000\n"]) == "2000 50000"
    assert codec_mod.decode("plain", CPU_MAX, ["2000 50000\n"]) == "2000 50000"


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize(("weight", "shares"), [(1, 10), (100, 1024), (10000, 102400), (0, 2), (30000, 262144)])
def test_shares_from_weight_scales_by_1024_over_100_and_clamps(weight: int, shares: int) -> None:
    assert codec_mod.shares_from_weight(weight) == shares


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 100), (262144, 10000), (10**7, 10000), (0, 1)])
def test_weight_from_shares_scales_back_and_clamps(shares: int, weight: int) -> None:
    assert codec_mod.weight_from_shares(shares) == weight


def test_weight_as_shares_encodes_and_decodes_the_first_word() -> None:
    assert codec_mod.encode("weight_as_shares", WEIGHT, 100) == ["1024"]
    assert codec_mod.decode("weight_as_shares", WEIGHT, ["1024 extra\n"]) == 100


# --------------------------------------------------------------------------- plain text and bools
def test_plain_decoding_reads_the_first_word_of_an_int_file() -> None:
    assert codec_mod.decode("plain", SWAPPINESS, ["60 extra\n"]) == 60
    assert codec_mod.encode("plain", SWAPPINESS, 60) == ["60"]


@pytest.mark.parametrize("text", ["", "\n", "sixty\n"])
def test_plain_decoding_of_text_that_is_no_integer_raises_invalid_value(text: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        codec_mod.decode("plain", SWAPPINESS, [text])
    assert (info.value.fields["knob"], info.value.fields["value"]) == ("vm.swappiness", text)


def test_plain_decoding_of_a_bool_file_reads_its_first_word() -> None:
    assert codec_mod.decode("plain", IDLE, ["1 extra\n"]) is True
    assert codec_mod.decode("plain", IDLE, ["0\n"]) is False


@pytest.mark.parametrize("word", ["1", "true", "on", "yes", "y", "TRUE", " Y "])
def test_every_true_word_reads_as_true(word: str) -> None:
    assert normalize(IDLE, word) is True


@pytest.mark.parametrize("word", ["0", "false", "off", "no", "n", "False", " N "])
def test_every_false_word_reads_as_false(word: str) -> None:
    assert normalize(IDLE, word) is False


def test_a_choice_file_without_brackets_decodes_to_its_stripped_text() -> None:
    assert codec_mod.decode("plain", THP, ["  madvise \n"]) == "madvise"
    assert codec_mod.restorable("always [madvise] never\n") == "madvise"
    assert codec_mod.restorable("  mq-deadline \n") == "mq-deadline"


def test_choices_in_lists_every_option_of_a_bracketed_file() -> None:
    assert codec_mod.choices_in("always [madvise] never\n") == ["always", "madvise", "never"]


def test_a_choice_outside_a_catalog_list_must_be_one_word() -> None:
    free = spec("choice")
    assert normalize(free, " bfq ") == "bfq"
    reason("two words", free)
    reason("  ", free)


@pytest.mark.parametrize("name", ["nosuch", ""])
def test_unknown_codecs_raise_value_error_both_ways(name: str) -> None:
    with pytest.raises(ValueError):
        codec_mod.encode(name, SWAPPINESS, 1)
    with pytest.raises(ValueError):
        codec_mod.decode(name, SWAPPINESS, ["1"])


# --------------------------------------------------------------------------- what a refusal carries
REFUSALS: list[tuple[KnobSpec, object]] = [
    (SWAPPINESS, True),
    (SWAPPINESS, "x"),
    (SWAPPINESS, -1),
    (SWAPPINESS, 10**6),
    (IDLE, "maybe"),
    (IDLE, 2),
    (THP, 3),
    (THP, "sometimes"),
    (spec("choice"), "a b"),
    (spec("cpulist"), 7),
    (spec("cpulist"), "x"),
    (spec("cpulist"), "5-4"),
    (spec("cpulist"), "4096"),
    (CPU_MAX, None),
    (CPU_MAX, 2.5),
    (CPU_MAX, "1 2 3"),
    (CPU_MAX, "1000 5"),
    (CPU_MAX, "5 100000"),
]


@pytest.mark.parametrize(("knob", "bad"), REFUSALS)
def test_every_refusal_names_the_knob_the_value_and_a_reason(knob: KnobSpec, bad: object) -> None:
    err = reason(bad, knob)
    expected = bad if isinstance(bad, int | str | bool) else repr(bad)
    assert (err.code, err.fields["knob"], err.fields["value"]) == ("invalid_value", knob.id, expected)
    assert isinstance(err.detail, str) and err.detail


@pytest.mark.parametrize(
    ("codec", "knob", "text"),
    [
        ("plain", spec("cpulist"), "0-x\n"),
        ("plain", IDLE, "maybe\n"),
        ("plain", CPU_MAX, "max 5\n"),
        ("cpu_max_v2", CPU_MAX, "junk\n"),
    ],
)
def test_kernel_text_that_does_not_parse_raises_invalid_value_naming_the_knob(
    codec: str, knob: KnobSpec, text: str
) -> None:
    with pytest.raises(InvalidValueError) as info:
        codec_mod.decode(codec, knob, [text])
    assert info.value.fields["knob"] == knob.id


def test_a_value_longer_than_the_limit_is_refused_naming_the_knob() -> None:
    # found by the mutation run on main: the check existed, but nothing held it to its typed error
    long = "1" * (codec_mod.MAX_VALUE_CHARS + 1)
    with pytest.raises(InvalidValueError) as info:
        normalize(SWAPPINESS, long)
    assert info.value.fields == {"knob": "vm.swappiness", "value": long}
    assert normalize(SWAPPINESS, " " * (codec_mod.MAX_VALUE_CHARS - 2) + "10") == 10  # at the limit: read


# --------------------------------------------------------------------------- gaps the re-run of issue 21 found
NICE = CATALOG.spec("task.{sel}.nice")


def test_a_task_knobs_state_decodes_to_the_value_most_tasks_hold() -> None:
    assert codec_mod.decode("task", NICE, ["5\n"]) == 5
    assert codec_mod.decode("task", NICE, ["5 except 42/1000=0 43/1001=-3\n"]) == 5


@pytest.mark.parametrize("text", ["", "5 except", "5 except 42=0", "5 and 42/1000=0"])
def test_a_task_knobs_state_that_is_not_one_is_refused_as_an_invalid_value_naming_the_knob(text: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        codec_mod.decode("task", NICE, [text])
    assert (info.value.fields["knob"], info.value.fields["value"]) == (NICE.id, text.strip())
    assert isinstance(info.value.detail, str) and info.value.detail


def test_an_integer_knob_whose_kernel_text_is_not_a_number_is_refused_saying_why() -> None:
    with pytest.raises(InvalidValueError) as info:
        codec_mod.decode("plain", SWAPPINESS, ["sixty\n"])
    assert (info.value.fields["knob"], info.value.fields["value"]) == ("vm.swappiness", "sixty\n")
    assert isinstance(info.value.detail, str) and info.value.detail
