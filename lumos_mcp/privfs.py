"""Private files: the state directory and everything in it belong to the server's user alone.

Every file the server keeps (journal, audit log, approvals, locks, the sandbox tree) is
created 0600 and every directory 0700 whatever the umask; files are opened with
``O_NOFOLLOW`` and replaced by write-then-rename inside their own directory, so a link
planted in the state directory is never followed. ``check_state_dir`` refuses, at start, a
state directory that someone else could have changed: one reached through a symlink in a
directory others may write, one not owned by the server's user, or one holding a symlink,
a hard-linked file, or anything group- or world-writable.

This module imports only ``errors``: every layer may use it.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from lumos_mcp.errors import StateDirUnsafeError

DIR_MODE = 0o700
FILE_MODE = 0o600
_MAX_LINKS = 40  # symlinks followed while checking a path, as the kernel's ELOOP limit


def _refuse(path: str | os.PathLike[str], problem: str, detail: str = "") -> StateDirUnsafeError:
    return StateDirUnsafeError(detail, path=str(path), problem=problem)


def _unusable(path: str | os.PathLike[str], exc: OSError) -> StateDirUnsafeError:
    return _refuse(path, "unusable", exc.strerror or str(exc))


def _check_entry(path: str | os.PathLike[str], st: os.stat_result, *, directory: bool) -> None:
    """Refuse an entry that is a link, someone else's, writable by others, or of the wrong type."""
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "symlink")
    if st.st_uid != os.geteuid():
        raise _refuse(path, "not_owned", f"owner uid {st.st_uid}, server uid {os.geteuid()}")
    if st.st_mode & 0o022:
        raise _refuse(path, "group_or_world_writable", f"mode {stat.S_IMODE(st.st_mode):04o}")
    if directory and not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "not_a_directory")
    if not directory and not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "not_a_regular_file")
    if not directory and st.st_nlink > 1:
        raise _refuse(path, "hard_linked", f"{st.st_nlink} links")


def _tighten(path: str | os.PathLike[str], st: os.stat_result, mode: int) -> None:
    """Drop every bit outside ``mode`` from an entry already checked to be ours."""
    if stat.S_IMODE(st.st_mode) & ~mode:
        try:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
        except OSError as exc:
            raise _unusable(path, exc) from exc


def _shared(st: os.stat_result) -> bool:
    return bool(st.st_mode & 0o022)


def check_ancestors(path: str | os.PathLike[str]) -> None:
    """Refuse a path whose way in could be changed by others.

    Walks ``path``'s parent directories as the kernel would, following symlinks. A symlink
    in a directory that others may write (``/tmp/x -> elsewhere``), or one owned by neither
    root nor the server's user, is refused (``symlink_in_shared_directory``), and so is a
    directory on the way that others may write without the sticky bit (``parent_writable``:
    they could rename what lies below). Missing components end the walk: the caller creates
    them.

    Raises:
        StateDirUnsafeError: as above, or ``unusable`` when a component cannot be examined.
    """
    todo = list(Path(os.path.abspath(path)).parts[1:-1])
    current = Path("/")
    links = 0
    while todo:
        part = todo.pop(0)
        if part in (".", ""):
            continue
        if part == "..":
            current = current.parent
            continue
        candidate = current / part
        try:
            here = os.stat(current)
            st = os.lstat(candidate)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _unusable(candidate, exc) from exc
        if stat.S_ISLNK(st.st_mode):
            if _shared(here) or st.st_uid not in (0, os.geteuid()):
                raise _refuse(
                    candidate, "symlink_in_shared_directory", f"in {current} (mode {here.st_mode & 0o7777:04o})"
                )
            links += 1
            if links > _MAX_LINKS:
                raise _refuse(candidate, "unusable", "too many levels of symbolic links")
            target = Path(os.readlink(candidate))
            if target.is_absolute():
                current = Path("/")
            todo = [*target.parts[1:], *todo] if target.is_absolute() else [*target.parts, *todo]
            continue
        if _shared(st) and not st.st_mode & stat.S_ISVTX:
            raise _refuse(candidate, "parent_writable", f"mode {st.st_mode & 0o7777:04o} without the sticky bit")
        current = candidate


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) 0700 whatever the umask, or check the existing one.

    An existing directory must be ours, not a symlink and not group- or world-writable; read
    and search bits for others are removed.

    Raises:
        StateDirUnsafeError: the path is unsafe (see ``check_ancestors``) or cannot be created.
    """
    path = Path(path)
    check_ancestors(path)
    missing: list[Path] = []
    probe = Path(os.path.abspath(path))
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)  # umask can only remove bits from 0700
        except FileExistsError:
            pass
        except OSError as exc:
            raise _unusable(directory, exc) from exc
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _unusable(path, exc) from exc
    _check_entry(path, st, directory=True)
    _tighten(path, st, DIR_MODE)
    return path


def check_state_dir(path: str | os.PathLike[str]) -> None:
    """Refuse a state directory that anyone but the server's user could have changed.

    Checks the way in (``check_ancestors``), the directory, and every entry below it
    (the sandbox tree included): no symlink, no hard-linked file, nothing owned by another
    user or group- or world-writable. Read bits for others are removed on the way. An
    absent directory passes (the server creates it private).

    Raises:
        StateDirUnsafeError: naming the first offending path and its problem.
    """
    path = Path(path)
    check_ancestors(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _unusable(path, exc) from exc
    _check_entry(path, st, directory=True)
    _tighten(path, st, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(path, onerror=_raise_walk_error):
        for name in (*dirnames, *filenames):
            entry = os.path.join(dirpath, name)
            try:
                est = os.lstat(entry)
            except FileNotFoundError:
                continue  # removed meanwhile (a temp file renamed into place)
            except OSError as exc:
                raise _unusable(entry, exc) from exc
            directory = stat.S_ISDIR(est.st_mode)
            _check_entry(entry, est, directory=directory)
            _tighten(entry, est, DIR_MODE if directory else FILE_MODE)


def _raise_walk_error(exc: OSError) -> None:
    raise _unusable(exc.filename or "?", exc) from exc


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open`` that never follows a symlink at ``path`` and creates 0600 (with ``O_CREAT``).

    The opened file must be a regular file, ours, with one link and not group- or
    world-writable; read bits for others are removed. The caller closes the descriptor.

    Raises:
        StateDirUnsafeError: ``path`` is a symlink or an unsafe file.
        OSError: any other failure to open (missing file without ``O_CREAT``, EROFS, ENOSPC...).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise _refuse(path, "symlink") from exc
        raise
    try:
        st = os.fstat(fd)
        _check_entry(path, st, directory=False)
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: str | os.PathLike[str]) -> bytes:
    """The whole content of a private file, opened without following a symlink.

    Raises:
        StateDirUnsafeError: ``path`` is a symlink or an unsafe file.
        OSError: it cannot be read (``FileNotFoundError`` when absent).
    """
    fd = open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or creation in ``directory`` durable.

    Raises:
        OSError: the directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_private(
    path: str | os.PathLike[str], data: bytes, before_rename: Callable[[], None] | None = None
) -> None:
    """Replace ``path`` with ``data``: a new 0600 temp file in the same directory, fsync,
    rename over ``path`` (a symlink there is replaced, never followed), fsync the directory.
    ``before_rename`` runs once the temp file is durable (a crash test's kill point).

    Raises:
        OSError: the file could not be written or renamed (the old content is then intact).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL, 0600
    done = False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
        done = True
        fsync_dir(path.parent)
    finally:
        if not done:
            with suppress(FileNotFoundError):
                os.unlink(tmp)


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "atomic_write_private",
    "check_ancestors",
    "check_state_dir",
    "ensure_private_dir",
    "fsync_dir",
    "open_private",
    "read_private",
]
