"""Codecs: turn what a caller gives into a canonical value, values into file text, and file
text back into canonical values, so that values compare after normalisation.

Canonical values: ``int`` for int knobs, ``bool`` for bool knobs, ``str`` for the rest
(a choice's name, a cpu list as ``"0-3,6"``, a CPU limit as ``"max 100000"`` or
``"50000 100000"``: quota and period in microseconds).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from lumos_mcp.errors import InvalidValueError
from lumos_mcp.knobs.spec import Kind, KnobSpec, Value

_TRUE = {"1", "true", "on", "yes", "y"}
_FALSE = {"0", "false", "off", "no", "n"}
CPU_MAX_PERIOD_RANGE = (1000, 1_000_000)
CPU_MAX_MIN_QUOTA = 1000
# ASCII only: str.isdigit() is also true for superscripts and other scripts' digits, which int()
# rejects or the kernel never would.
_INT_RE = re.compile(r"[+-]?[0-9]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_WORD_RE = re.compile(r"[A-Za-z0-9_+-]+")
# No knob's value is longer (a cpulist naming 1000 CPUs one by one is under 4000); it also keeps
# every int() below Python's 4300-digit conversion limit, which raises a plain ValueError.
MAX_VALUE_CHARS = 4096


def _digits(text: str) -> bool:
    return _DIGITS_RE.fullmatch(text) is not None


def _bad(spec: KnobSpec, value: object, why: str) -> InvalidValueError:
    return InvalidValueError(why, knob=spec.id, value=value if isinstance(value, int | str | bool) else repr(value))


def _parse_int(spec: KnobSpec, value: object) -> int:
    if isinstance(value, bool):
        raise _bad(spec, value, "expected an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise _bad(spec, value, "expected an integer")
    if spec.min is not None and number < spec.min:
        raise _bad(spec, value, f"below the hard minimum {spec.min}")
    if spec.max is not None and number > spec.max:
        raise _bad(spec, value, f"above the hard maximum {spec.max}")
    return number


def _parse_bool(spec: KnobSpec, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _bad(spec, value, "expected a boolean (true/false, 1/0)")


def _parse_choice(spec: KnobSpec, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(spec, value, "expected one of the knob's choices as a string")
    word = value.strip()
    if spec.choices and word not in spec.choices:
        raise _bad(spec, value, f"not one of {list(spec.choices)}")
    if not _WORD_RE.fullmatch(word):
        raise _bad(spec, value, "a choice is a single word")
    return word


def _cpus(spec: KnobSpec, value: object) -> list[int]:
    if not isinstance(value, str):
        raise _bad(spec, value, "expected a cpu list such as '0-3,6'")
    cpus: set[int] = set()
    for part in value.strip().split(","):
        lo, dash, hi = part.strip().partition("-")
        if not _digits(lo) or (dash and not _digits(hi)):
            raise _bad(spec, value, "expected a cpu list such as '0-3,6'")
        first, last = int(lo), int(hi or lo)
        if last < first or last > 4095:
            raise _bad(spec, value, "cpu range out of order or beyond 4095")
        cpus.update(range(first, last + 1))
    return sorted(cpus)


def format_cpulist(cpus: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    runs: list[str] = []
    start = prev = None
    for cpu in cpus:
        if start is None:
            start = prev = cpu
        elif prev is not None and cpu == prev + 1:
            prev = cpu
        else:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = cpu
    if start is not None:
        runs.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(runs)


def _parse_cpulist(spec: KnobSpec, value: object) -> str:
    return format_cpulist(_cpus(spec, value))


def _parse_cpu_max(spec: KnobSpec, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _bad(spec, value, "expected 'max', 'QUOTA_US' or 'QUOTA_US PERIOD_US'")
    words = value.split()
    if not 1 <= len(words) <= 2:
        raise _bad(spec, value, "expected 'max', 'QUOTA_US' or 'QUOTA_US PERIOD_US'")
    quota, period = words[0], (words[1] if len(words) == 2 else "100000")
    if not _digits(period) or not CPU_MAX_PERIOD_RANGE[0] <= int(period) <= CPU_MAX_PERIOD_RANGE[1]:
        raise _bad(spec, value, f"period must be {CPU_MAX_PERIOD_RANGE[0]}..{CPU_MAX_PERIOD_RANGE[1]} us")
    if quota in ("max", "-1"):
        return f"max {int(period)}"
    if not _digits(quota) or int(quota) < CPU_MAX_MIN_QUOTA:
        raise _bad(spec, value, f"quota must be 'max' or at least {CPU_MAX_MIN_QUOTA} us")
    return f"{int(quota)} {int(period)}"


_PARSERS: dict[Kind, Callable[[KnobSpec, object], Value]] = {
    "int": _parse_int,
    "bool": _parse_bool,
    "choice": _parse_choice,
    "cpulist": _parse_cpulist,
    "cpu_max": _parse_cpu_max,
}


def normalize(spec: KnobSpec, value: object) -> Value:
    """A caller's value as the knob's canonical value, checked against the hard range.

    Raises:
        InvalidValueError: wrong type, malformed, longer than ``MAX_VALUE_CHARS``, or outside the hard range.
    """
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise _bad(spec, value, f"longer than {MAX_VALUE_CHARS} characters")
    return _PARSERS[spec.kind](spec, value)


# --------------------------------------------------------------------------- file codecs
# A file codec turns a canonical value into the text of each file it spans (in write order)
# and the files' text back into a canonical value.


def _first_word(text: str) -> str:
    words = text.split()
    return words[0] if words else ""


def _chosen(text: str) -> str:
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text.strip()


def shares_from_weight(weight: int) -> int:
    """cgroup v2 ``cpu.weight`` (default 100) -> v1 ``cpu.shares`` (default 1024), as the kernel maps it."""
    return min(max(round(weight * 1024 / 100), 2), 262144)


def weight_from_shares(shares: int) -> int:
    return min(max(round(shares * 100 / 1024), 1), 10000)


# A task knob's state (kernelfs/tasks.py): the value most selected tasks hold, then each
# task that holds another as ``tid/start=value``.
_TASK_STATE_RE = re.compile(r"\S+( except( [0-9]{1,10}/[0-9]{1,20}=\S+)+)?")


def encode(codec: str, spec: KnobSpec, value: Value) -> list[str]:
    """File texts for ``value``, one per file of the path candidate, in write order."""
    if codec == "task":
        return [str(value)]
    if codec == "plain":
        if isinstance(value, bool):
            return ["1" if value else "0"]
        return [str(value)]
    if codec == "weight_as_shares":
        return [str(shares_from_weight(int(value)))]
    if codec == "cpu_max_v2":
        return [str(value)]
    if codec == "cpu_max_v1":  # files: period, then quota (-1 = no limit)
        quota, period = str(value).split()
        return [period, "-1" if quota == "max" else quota]
    raise ValueError(f"unknown codec {codec!r}")


def decode(codec: str, spec: KnobSpec, texts: Sequence[str]) -> Value:
    """The canonical value the kernel holds, from the files' text.

    Raises:
        InvalidValueError: the kernel's text does not parse as the knob's kind.
    """
    if codec == "plain":
        text = texts[0]
        if spec.kind == "choice":
            return _chosen(text)
        if spec.kind == "cpulist":
            return _parse_cpulist(spec, text.strip() or "0")
        if spec.kind == "bool":
            return _parse_bool(spec, _first_word(text))
        if spec.kind == "cpu_max":
            return _parse_cpu_max(spec, text.strip())
        word = _first_word(text)
        try:
            return int(word)
        except ValueError:
            raise _bad(spec, text, "the kernel's text is not an integer") from None
    if codec == "weight_as_shares":
        return weight_from_shares(int(_first_word(texts[0])))
    if codec == "task":
        text = texts[0].strip()
        if _TASK_STATE_RE.fullmatch(text) is None:
            raise _bad(spec, text[:200], "not a task knob's state ('BASE' or 'BASE except TID/START=VALUE ...')")
        return decode("plain", spec, [_first_word(text)])
    if codec == "cpu_max_v2":
        return _parse_cpu_max(spec, texts[0].strip())
    if codec == "cpu_max_v1":
        period, quota = _first_word(texts[0]), _first_word(texts[1])
        return _parse_cpu_max(spec, f"{'max' if quota == '-1' else quota} {period}")
    raise ValueError(f"unknown codec {codec!r}")


def restorable(text: str) -> str:
    """File text saved from a read, in the form the kernel accepts back: a bracketed choice
    file (``"always [madvise] never"``) restores by its chosen word, anything else stripped."""
    return _chosen(text) if "[" in text else text.strip()


def choices_in(text: str) -> list[str]:
    """The options of a bracketed choice file: ``"always [madvise] never"`` -> three names."""
    return [w.strip("[]") for w in text.split()]


CODECS = ("plain", "weight_as_shares", "cpu_max_v1", "cpu_max_v2", "task")
