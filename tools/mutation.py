"""Mutation testing of the safety core with mutmut 3.x: a score per module and the surviving mutants.

Usage (from the repository root, after ``pip install -e '.[test,mutation]'``)::

    nice -n 10 .venv/bin/python tools/mutation.py --module engine --sample 150 --seed 1
    nice -n 10 .venv/bin/python tools/mutation.py --module all --sample 150 --seed 1 > mutation.log 2>&1

Each module is mutated in a scratch copy of the repository (``--workdir``, default
``/tmp/lumos-mutation/<module>``) so that the worktree never holds a ``mutants/`` tree and each module
has its own mutmut configuration: only that file is mutated and only the tests that exercise it run.

Mutants reach child processes: mutmut selects the active mutant with the ``MUTANT_UNDER_TEST``
environment variable, which children inherit, and the children import the mutated tree because
``PYTHONPATH`` puts ``mutants/`` first (the crash worker and the multi-process tests also put the
directory above ``tests/`` first on their path, which inside the mutated tree is ``mutants/``).
mutmut only learns which tests cover a function from calls made in its own process, so the tests
matching ``child_tests`` below (whose work happens in children) are added to every function of the
module before the mutants run.

What mutmut 3 cannot mutate: code outside functions (module constants, class bodies, dataclass
fields and defaults, ``__slots__``) and functions with decorators other than the ones it knows
(``@property`` and friends are skipped too). Those are listed in docs/mutation.md and covered by reading.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import glob
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    path: str  # the file to mutate, relative to the repository
    tests: tuple[str, ...]  # globs of the test files that exercise it
    child_tests: tuple[str, ...] = field(default=())  # patterns of test ids whose work runs in child processes


TARGETS: dict[str, Target] = {
    "engine": Target(
        "lumos_mcp/policy/engine.py",
        ("tests/test_policy_engine*.py", "tests/test_policy_properties.py", "tests/test_policy_loader.py"),
    ),
    "codec": Target("lumos_mcp/knobs/codec.py", ("tests/test_codec*.py", "tests/test_knobs_catalog.py")),
    "audit": Target(
        "lumos_mcp/audit.py",
        ("tests/test_audit*.py", "tests/test_bounded_growth.py"),  # the latter: rotation and pruning
        child_tests=("tests/test_audit*.py::*process*",),
    ),
    "approvals": Target(
        "lumos_mcp/approvals.py", ("tests/test_approvals*.py",), child_tests=("tests/test_approvals*.py::*process*",)
    ),
    "journal": Target(
        "lumos_mcp/txn/journal.py",
        (
            "tests/test_txn*.py",
            "tests/test_journal*.py",
            "tests/test_recovery*.py",
            "tests/test_compaction.py",
            "tests/test_crash.py",
        ),
        child_tests=("tests/test_crash.py::*",),
    ),
    "manager": Target(
        "lumos_mcp/txn/manager.py",
        (
            "tests/test_txn*.py",
            "tests/test_journal*.py",
            "tests/test_recovery*.py",
            "tests/test_compaction.py",
            "tests/test_crash.py",
        ),
        child_tests=("tests/test_crash.py::*",),
    ),
}

# what a mutmut exit code means, as mutmut 3.8 records it in the .meta files
KILLED = {1, 3, 36, -24, 24, 152, 255, -11, -9}  # a failing test, a timeout or a crash all catch the mutant
NO_TESTS = {5, 33}

# Run inside the scratch copy: generate the mutants and collect which tests cover which function.
_PREPARE = """
from mutmut.__main__ import collect_or_load_stats, create_mutants
from mutmut.mutation.trampoline import set_mutant_under_test
from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths
from mutmut.workers.isolation import get_mutant_runner

set_mutant_under_test("mutant_generation")
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
create_mutants(1)
collect_or_load_stats(get_mutant_runner(1))
"""


def _expand(patterns: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        for name in sorted(glob.glob(pattern, root_dir=REPO)):
            if name not in found:
                found.append(name)
    return found


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def prepare_workdir(target: Target, workdir: Path, with_children: bool = True) -> list[str]:
    """A fresh copy of the repository with a mutmut configuration for this one file (without the
    test files that hold only child-process tests, if ``with_children`` is false)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for name in ("lumos_mcp", "tests", "schemas", "policies"):
        shutil.copytree(REPO / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # Mutated code runs slower (trampolines, a loaded machine): hypothesis deadlines would fail clean runs.
    with (workdir / "tests" / "conftest.py").open("a") as conftest:
        conftest.write(
            "\n\nfrom hypothesis import settings as _mutation_settings\n\n"
            '_mutation_settings.register_profile("mutation", deadline=None)\n'
        )
    tests = _expand(target.tests)
    if not with_children:
        whole_files = [p.removesuffix("::*") for p in target.child_tests if p.endswith("::*")]
        tests = [t for t in tests if not any(fnmatch.fnmatch(t, f) for f in whole_files)]
    pyproject = (REPO / "pyproject.toml").read_text()
    pyproject = pyproject.split("\n[tool.mutmut]")[0]
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["lumos_mcp"]\n'
        f"only_mutate = {_toml_list([target.path])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        # its own pytest temporary directory: sessions sharing /tmp/pytest-of-USER remove each other's old
        # directories at exit, and the warning that raises (an error here) would count as a caught mutant
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "--hypothesis-profile=mutation", '
        f'"--basetemp={workdir / ".pytest-tmp"}"]\n'
        'also_copy = ["schemas", "policies"]\n'
        "use_git_change_detection = false\n"
        # a mutant that loops is stopped after 4x the CPU time of its tests (mutmut's default is 30x)
        "timeout_multiplier = 2.0\n"
    )
    (workdir / "pyproject.toml").write_text(pyproject)
    (workdir / "mutants").mkdir()
    return tests


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # children (crash worker, multi-process tests) import the mutated tree, not the editable install
    env["PYTHONPATH"] = str(workdir / "mutants")
    return env


def _meta(workdir: Path, target: Target) -> dict[str, int | None]:
    data = json.loads((workdir / "mutants" / (target.path + ".meta")).read_text())
    codes: dict[str, int | None] = data["exit_code_by_key"]
    return codes


def _module_name(target: Target) -> str:
    return target.path.removesuffix(".py").replace("/", ".")


def _changed_line(target: Target, name: str, diff: str) -> int | None:
    """The line of the original file the mutant changes: the first removed line of the diff,
    searched from the mutated function's ``def``."""
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    if not removed:
        return None
    function = name.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0].split("\u01c1")[-1].removeprefix("x_")
    source = (REPO / target.path).read_text().splitlines()
    start = next((i for i, line in enumerate(source) if re.match(rf"\s*(async\s+)?def {function}\b", line)), 0)
    return next((i + 1 for i in range(start, len(source)) if source[i].strip() == removed[0]), None)


def unreached(target: Target, mutant_names: list[str]) -> list[str]:
    """Functions of the module that got no mutant (decorated ones, nested ones, or nothing to mutate)."""
    tree = ast.parse((REPO / target.path).read_text())
    mutated = {name.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[1] for name in mutant_names}
    found: list[str] = []

    def visit(node: ast.AST, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, child.name)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                mangled = f"x\u01c1{cls}\u01c1{child.name}" if cls else f"x_{child.name}"
                if mangled not in mutated:
                    decorators = [ast.unparse(d) for d in child.decorator_list]
                    why = f" (@{', @'.join(decorators)})" if decorators else ""
                    found.append(f"{cls + '.' if cls else ''}{child.name}:{child.lineno}{why}")

    visit(tree, None)
    return found


def _source_hash(target: Target) -> str:
    return hashlib.sha256((REPO / target.path).read_bytes()).hexdigest()


def _diff(workdir: Path, name: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name],
        cwd=workdir,
        env=_env(workdir),
        capture_output=True,
        text=True,
        check=False,
    )
    return "\n".join(line for line in shown.stdout.splitlines() if not line.startswith("# "))


def child_reach(workdir: Path, target: Target, child_ids: list[str], log: Any) -> set[int] | None:
    """The lines of the module that the child-process tests run, in the test process or in the
    children it starts (coverage.py follows subprocesses), on the unmutated code; None if those tests
    failed. A child killed with SIGKILL saves no data, but each crash scenario also runs once to its
    end, and a killed run is a prefix of it."""
    rc = workdir / ".coveragerc-children"
    rc.write_text(
        "[run]\npatch = subprocess\nparallel = true\n"
        f"data_file = {workdir / '.coverage-children'}\ninclude = */{target.path}\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(workdir)
    cov = [sys.executable, "-m", "coverage"]
    pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=mutation"]
    pytest += [f"--basetemp={workdir / '.pytest-tmp'}", *child_ids]
    run = subprocess.run([*cov, "run", f"--rcfile={rc}", *pytest], cwd=workdir, env=env, stdout=log, stderr=log)
    if run.returncode != 0:  # e.g. a crash worker past its time on an overloaded machine: lines unknown
        return None
    subprocess.run([*cov, "combine", f"--rcfile={rc}"], cwd=workdir, env=env, stdout=log, stderr=log, check=True)
    import coverage  # mutmut depends on it

    data = coverage.CoverageData(basename=str(workdir / ".coverage-children"))
    data.read()
    files = [f for f in data.measured_files() if f.endswith(target.path)]
    return {line for f in files for line in data.lines(f) or []}


def _statement_line(target: Target, line: int) -> int:
    """The first line of the innermost statement holding ``line`` (coverage.py reports statements
    by their first line; a mutant may change a continuation line)."""
    tree = ast.parse((REPO / target.path).read_text())
    starts = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno)
    ]
    return max(starts, default=line)


def _set_mapping(workdir: Path, target: Target, mapping_for: Any, timeout_multiplier: float | None = None) -> None:
    """Rewrite mutmut's map of which tests run for each function of the module."""
    stats_path = workdir / "mutants" / "mutmut-stats.json"
    stats = json.loads(stats_path.read_text())
    mapping: dict[str, list[str]] = stats["tests_by_mangled_function_name"]
    functions = {name.rsplit("__mutmut_", 1)[0] for name in _meta(workdir, target)}
    for function in sorted(functions | set(mapping)):
        mapping.setdefault(function, [])
        mapping[function] = mapping_for(function, mapping[function], stats["duration_by_test"])
    stats_path.write_text(json.dumps(stats, indent=4))
    if timeout_multiplier is not None:
        pyproject = workdir / "pyproject.toml"
        text = re.sub(
            r"timeout_multiplier = [0-9.]+", f"timeout_multiplier = {timeout_multiplier}", pyproject.read_text()
        )
        pyproject.write_text(text)


def _mutmut_run(workdir: Path, names: list[str], log: Any, minutes: float | None = None) -> None:
    """Run these mutants; stop mutmut (and the tests it runs) after ``minutes``, if given."""
    if not names:
        return
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or "mutmut"
    run = [mutmut, "run", "--max-children", "1", *names]
    process = subprocess.Popen(
        run, cwd=workdir, env=_env(workdir), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        process.wait(timeout=None if minutes is None else minutes * 60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.flush()


def _forget(workdir: Path, target: Target, names: list[str]) -> None:
    """Mark mutants unchecked in mutmut's results, so that a run stopped early shows which it never ran."""
    meta_path = workdir / "mutants" / (target.path + ".meta")
    meta = json.loads(meta_path.read_text())
    meta["exit_code_by_key"].update(dict.fromkeys(names))
    meta_path.write_text(json.dumps(meta, indent=4))


def _diffs(workdir: Path, target: Target, names: list[str]) -> dict[str, str]:
    """Each mutant's diff against the original function, read from the mutated file (as ``mutmut show``
    prints it, without starting mutmut once per mutant: that took seconds each on a loaded machine)."""
    source = (workdir / "mutants" / target.path).read_text()
    lines = source.splitlines()
    functions = {
        node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    out: dict[str, str] = {}
    for name in names:
        mangled = name.rsplit(".", 1)[1]
        original = functions.get(mangled.rsplit("__mutmut_", 1)[0] + "__mutmut_orig")
        mutant = functions.get(mangled)
        if original is None or mutant is None:
            out[name] = _diff(workdir, name)
            continue
        orig_name, mutant_name = mangled.rsplit("__mutmut_", 1)[0] + "__mutmut_orig", mangled
        lines = difflib.unified_diff(
            original.splitlines(), mutant.replace(mutant_name, orig_name, 1).splitlines(), lineterm="", n=3
        )
        out[name] = "\n".join(lines)
    return out


def run_module(
    key: str,
    sample: int,
    seed: int,
    workdir_root: Path,
    recheck: Path | None = None,
    child_minutes: float | None = None,
) -> dict[str, Any]:
    target = TARGETS[key]
    workdir = workdir_root / key
    started = time.monotonic()
    tests = prepare_workdir(target, workdir, with_children=child_minutes != 0)
    print(f"== {key}: {target.path} against {len(tests)} test files: {' '.join(tests)}", flush=True)
    log = (workdir_root / f"{key}.mutmut.log").open("w")  # mutmut's own progress output
    subprocess.run(
        [sys.executable, "-c", _PREPARE],
        cwd=workdir,
        env=_env(workdir),
        stdout=log,
        stderr=subprocess.STDOUT,
        check=True,
    )
    everyone = sorted(_meta(workdir, target))
    stats = json.loads((workdir / "mutants" / "mutmut-stats.json").read_text())
    child_ids = sorted(t for t in stats["duration_by_test"] if any(fnmatch.fnmatch(t, p) for p in target.child_tests))
    chosen = sorted(random.Random(seed).sample(everyone, sample)) if 0 < sample < len(everyone) else everyone
    earlier: dict[str, Any] | None = None
    if recheck is not None:
        # Only tests were added since that run and the module's code is the same (checked below), so
        # a mutant killed then is killed now: run again only its survivors, in the same sample.
        earlier = json.loads((recheck / f"{key}.json").read_text())
        before = hashlib.sha256((recheck / key / target.path).read_bytes()).hexdigest()
        assert before == _source_hash(target), f"{target.path} changed since {recheck}"
        # its timeouts too: on a loaded machine a timeout may be a clean test that ran slow
        timed = sorted(n for n, c in earlier.get("exit_codes", {}).items() if c in KILLED - {1, 3})
        chosen = sorted({s["name"] for s in earlier["survivors"]} | set(timed))
        earlier["killed"] -= len(timed)
        earlier["checked"] -= len(timed)
        print(f"   rechecking the {len(chosen) - len(timed)} survivors and {len(timed)} timeouts of {recheck}")
    print(f"   {len(everyone)} mutants, running {len(chosen)} (seed {seed}); child-process tests: {len(child_ids)}")
    print(f"   functions with no mutant: {', '.join(unreached(target, everyone)) or 'none'}")
    print(f"   mutmut's output: {log.name}", flush=True)

    # Phase 1: every chosen mutant against the in-process tests, fastest first, stopping at the first
    # failure. The child-process tests (the crash test: one test of about 25 s) are left out here.
    _set_mapping(workdir, target, lambda f, ts, d: sorted(t for t in ts if t not in child_ids))
    _mutmut_run(workdir, chosen, log)
    codes = dict(_meta(workdir, target))
    # A timeout counts as caught, but on a loaded machine a clean test can outlast mutmut's limit:
    # run the mutants that timed out (or were killed by the CPU limit) once more with 4x the time.
    slow = [n for n in chosen if codes.get(n) in KILLED - {1, 3}]
    if slow:
        _set_mapping(workdir, target, lambda f, ts, d: ts, timeout_multiplier=8.0)
        _mutmut_run(workdir, slow, log)
        codes.update({n: _meta(workdir, target).get(n) for n in slow})
        still = sum(1 for n in slow if codes[n] in KILLED - {1, 3})
        print(f"   {len(slow)} timed out in phase 1; run again with 4x the time: {still} timed out again", flush=True)
    phase1 = time.monotonic() - started
    killed = [n for n in chosen if codes.get(n) in KILLED]
    unchecked = [n for n in chosen if codes.get(n) is None]
    rest = [n for n in chosen if n not in killed and n not in unchecked]
    print(f"   phase 1 (in-process tests): {len(killed)} caught, {len(rest)} left; {phase1 / 60:.1f} min", flush=True)

    # Phase 2: the mutants that survived phase 1 and change a line the child-process tests run meet those
    # tests (mutmut's MUTANT_UNDER_TEST and PYTHONPATH reach the children). A mutant whose line they
    # never run cannot be caught by them, so it is not run again.
    diffs = _diffs(workdir, target, rest)
    lines = {n: _changed_line(target, n, diffs[n]) for n in rest}
    unreached_by_children: list[str] = []
    second: list[str] = []
    out_of_time: list[str] = []
    if target.child_tests and rest and child_minutes == 0:  # phase 2 skipped: every survivor is reported as not run
        out_of_time = list(rest)
    elif child_ids and rest:
        reach = child_reach(workdir, target, child_ids, log)
        for n in rest:
            line = lines[n]
            if reach is not None and line is not None and _statement_line(target, line) not in reach:
                unreached_by_children.append(n)
            else:
                second.append(n)
        _set_mapping(workdir, target, lambda f, ts, d: list(child_ids), timeout_multiplier=4.0)
        _forget(workdir, target, second)
        _mutmut_run(workdir, second, log, minutes=child_minutes)
        phase2_codes = _meta(workdir, target)
        for n in second:
            if phase2_codes.get(n) is None:  # the time given to phase 2 ran out first
                out_of_time.append(n)
            else:
                codes[n] = phase2_codes[n]
        newly = [n for n in second if codes.get(n) in KILLED]
        killed += newly
        print(
            f"   phase 2 (child-process tests): {len(second)} run, {len(newly)} caught "
            f"(timeouts: {sum(1 for n in newly if codes[n] not in (1,))}), "
            f"{len(unreached_by_children)} not run (their line is not reached by those tests), "
            f"{len(out_of_time)} not run (out of time); "
            f"{(time.monotonic() - started - phase1) / 60:.1f} min",
            flush=True,
        )
    log.close()
    untested = [n for n in chosen if codes.get(n) in NO_TESTS]
    unchecked = [n for n in chosen if codes.get(n) is None and n not in unreached_by_children]
    survived = [n for n in chosen if n not in killed and n not in unchecked]
    elapsed = time.monotonic() - started
    checked = len(chosen) - len(unchecked)
    sample_size = len(chosen)
    killed_count = len(killed)
    if earlier is not None:
        killed_count += earlier["killed"]
        checked += earlier["checked"] - len(earlier["survivors"])
        sample_size = earlier["sample"]
    exit_codes = {**(earlier or {}).get("exit_codes", {}), **{n: codes.get(n) for n in chosen}}
    score = 100.0 * killed_count / checked if checked else 0.0
    print(f"\n== {key}: {killed_count}/{checked} caught ({score:.1f}%), {len(survived)} survived", end="")
    print(f" ({len(untested)} with no covering test), {len(unchecked)} not checked; {elapsed / 60:.1f} min")
    survivors = []
    for name in survived:
        diff = diffs.get(name) or _diff(workdir, name)
        line = lines.get(name)
        status = "no tests" if name in untested else "survived"
        if name in unreached_by_children:
            status += ", line not run by the child-process tests"
        if name in out_of_time:
            status += ", not run against the child-process tests (out of time)"
        print(f"\n-- {target.path}:{line} {name} ({status})")
        print("\n".join(line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@"))))
        survivors.append({"name": name, "line": line, "status": status, "diff": diff})
    result = {
        "module": target.path,
        "tests": tests,
        "mutants": len(everyone),
        "sample": sample_size,
        "seed": seed,
        "killed": killed_count,
        "checked": checked,
        "score": round(score, 1),
        "minutes": round(elapsed / 60, 1),
        "phase1_minutes": round(phase1 / 60, 1),
        "exit_codes": exit_codes,  # mutmut's, as in KILLED / NO_TESTS above
        "survivors": survivors,
    }
    (workdir_root / f"{key}.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", action="append", choices=[*TARGETS, "all"], required=True)
    parser.add_argument("--sample", type=int, default=150, help="mutants per module, at random (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lumos-mutation"))
    parser.add_argument(
        "--recheck",
        type=Path,
        metavar="DIR",
        help="an earlier --workdir on the same code: run only its survivors and timeouts again (after adding tests)",
    )
    parser.add_argument(
        "--child-minutes",
        type=float,
        help="at most this long for phase 2 per module (0: skip it); mutants not reached are reported as such",
    )
    args = parser.parse_args()
    keys = list(TARGETS) if "all" in args.module else args.module
    results = [run_module(key, args.sample, args.seed, args.workdir, args.recheck, args.child_minutes) for key in keys]
    print("\n== summary")
    for r in results:
        print(
            f"{r['module']:28} {r['killed']:4}/{r['checked']:<4} {r['score']:5.1f}%  of {r['mutants']} mutants, ",
            end="",
        )
        print(f"{r['minutes']} min")


if __name__ == "__main__":
    main()
