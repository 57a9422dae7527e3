"""How kernel files are named outside lumos-mcp: the sysctl key of a file under ``/proc/sys``
and the absolute path of a file under ``/sys``, for the formats other tools read (sysctl.d,
TuneD). Paths here are relative to the kernel root, as the catalog spells them."""

from __future__ import annotations

_SYSCTL = "proc/sys/"
_SYSFS = "sys/"


def sysctl_key(rel: str) -> str | None:
    """``proc/sys/vm/swappiness`` -> ``vm.swappiness``; None for a file that is not a sysctl. A
    name with a dot in a component (``net/ipv4/conf/eth0.1/rp_filter``) keeps the slashes."""
    if not rel.startswith(_SYSCTL):
        return None
    rest = rel[len(_SYSCTL) :]
    return rest if "." in rest else rest.replace("/", ".")  # sysctl.d(5) takes "/" where a name has a dot


def sysctl_file(key: str) -> str:
    """``vm.swappiness`` (or ``vm/swappiness``) -> ``proc/sys/vm/swappiness``."""
    return _SYSCTL + (key if "/" in key else key.replace(".", "/"))


def sysfs_path(rel: str) -> str | None:
    """``sys/block/vda/queue/nr_requests`` -> ``/sys/block/vda/queue/nr_requests``; None outside sysfs."""
    return "/" + rel if rel.startswith(_SYSFS) else None


def is_debugfs(rel: str) -> bool:
    """Whether a file lives in debugfs (no boot-time configuration file can set it)."""
    return rel.startswith(_SYSFS + "kernel/debug/")
