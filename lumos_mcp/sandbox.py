"""The sandbox: a shadow kernel tree under the state directory, seeded from the host.

Every catalog knob the host lets us read is copied with its current text; one the host
locks is simulated as locked; choice files keep their bracket behaviour and ints their hard
range, so the sandbox answers as the host would, and the host is never written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lumos_mcp.errors import KnobError
from lumos_mcp.kernelfs.backend import Backend, Resolved
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.kernelfs.root import KernelRoot
from lumos_mcp.kernelfs.tasks import TaskGoneError, split_task_path
from lumos_mcp.knobs import Catalog
from lumos_mcp.privfs import atomic_write_private, check_state_dir, ensure_private_dir

log = logging.getLogger(__name__)
SEEDED_MARK = ".lumos-sandbox-seeded"


def ensure_sandbox(base: Path, host: KernelRoot, catalog: Catalog, cgroups: tuple[str, ...] = ()) -> KernelRoot:
    """The sandbox tree at ``base``, seeded from ``host`` the first time (kept afterwards,
    so a restart finds the values its journal speaks of). Cgroups named in ``cgroups`` that
    the host lacks are simulated with default values.

    The tree is private (0700/0600) and never reached through a link: ``base`` or anything
    in it that is a symlink, someone else's, or writable by others is refused, so a swapped
    link cannot turn sandbox writes into writes elsewhere.

    Raises:
        StateDirUnsafeError: ``base`` or an entry in it is unsafe (see ``privfs.check_state_dir``).
    """
    ensure_private_dir(base)
    check_state_dir(base)
    fake = FakeKernel(base, release=host.kernel_release)
    if (base / SEEDED_MARK).exists():
        _add_cgroups(fake, Backend(fake.root, catalog), cgroups)
        return fake.root
    source = Backend(host, catalog)
    seeded = locked = 0
    for spec in catalog:
        for ref in source.instances(spec.id, cgroups):
            try:
                res = source.resolve(ref)
            except KnobError:
                continue
            if source.is_task(res):
                seeded += _seed_tasks(fake, source, res)
                continue
            try:
                reading = source.read(res)
            except KnobError as e:
                if e.code == "locked":
                    for f in res.files:
                        fake.file(f, "0", locked=True)
                    locked += 1
                continue
            for f, text in zip(res.files, reading.raw, strict=True):
                rule: dict[str, Any] = {}
                if spec.kind == "choice":
                    rule["choice"] = True
                elif spec.kind in ("int",) and spec.min is not None and spec.max is not None and res.codec == "plain":
                    rule["range"] = (spec.min, spec.max)
                fake.file(f, text, **rule)
            seeded += 1
    _add_cgroups(fake, Backend(fake.root, catalog), cgroups)
    atomic_write_private(
        base / SEEDED_MARK, f"seeded {seeded} knobs ({locked} locked) from {host.kernel_release}\n".encode()
    )
    log.info("sandbox seeded at %s: %d knobs, %d locked", base, seeded, locked)
    return fake.root


def _seed_tasks(fake: FakeKernel, source: Backend, res: Resolved) -> int:
    """Copy the tasks a task knob selects on the host into the sandbox's task table (once per
    task: the four task knobs of a cgroup select the same tasks). Returns 1 if any was copied."""
    selector, _ = split_task_path(res.files[0])
    access = source.tasks.access
    known = fake.tasks.load()["tasks"]
    try:
        tasks = source.tasks.select(selector, "policy")
    except KnobError:
        return 0
    for task in tasks:
        if str(task.tid) in known:
            continue
        try:
            attr = access.getattr(task.tid)
            fake.task(
                task.tid,
                comm=f"task-{task.tid}",
                cgroup=selector.value if selector.kind == "cgroup" else "",
                start=task.start,
                policy=attr.policy,
                prio=attr.priority,
                nice=access.get_nice(task.tid),
                slice_ns=attr.runtime or 1_400_000,
                cpus=tuple(access.get_affinity(task.tid)),
            )
        except (TaskGoneError, OSError):
            continue
    fake.task_config(honours_slice=access.honours_slice(), ncpus=os.cpu_count() or 1)
    return 1 if tasks else 0


def _add_cgroups(fake: FakeKernel, backend: Backend, cgroups: tuple[str, ...]) -> None:
    version = backend.cgroup_version() or "v1"
    for name in cgroups:
        exists = fake.root.is_dir(f"sys/fs/cgroup/cpu/{name}" if version == "v1" else f"sys/fs/cgroup/{name}")
        if exists:
            continue
        if version == "v1":
            fake.cgroup_v1(name)
        else:
            fake.cgroup_v2(name)
