"""Every refusal of the journal names the journal file in its ``path`` field (and, when the state
directory refused it, the problem), whichever step failed: an operator reads it in get_status
and in the audit log. The mutation run on main found these fields unchecked on the error paths
other than append's and compaction's directory sync."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lumos_mcp.errors import JournalError
from lumos_mcp.txn import journal as journal_mod
from lumos_mcp.txn.journal import Journal, scan


def test_a_journal_that_cannot_be_read_names_its_path(journal_path: Path) -> None:
    journal_path.mkdir(parents=True)  # a directory where the file should be: read fails with EISDIR
    with pytest.raises(JournalError) as info:
        scan(journal_path)
    assert info.value.fields == {"path": str(journal_path)}


def test_a_journal_that_cannot_be_opened_names_its_path(journal_path: Path) -> None:
    journal_path.mkdir(parents=True)
    with pytest.raises(JournalError) as info:
        Journal(journal_path)
    assert info.value.fields == {"path": str(journal_path)}


def test_a_symlink_at_the_journal_path_is_refused_naming_the_path_and_the_problem(
    journal_path: Path, tmp_path: Path
) -> None:
    journal_path.parent.mkdir(mode=0o700, parents=True)
    (tmp_path / "elsewhere").write_text("")
    journal_path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(JournalError) as info:
        Journal(journal_path)
    assert info.value.fields == {"path": str(journal_path), "problem": "symlink"}


def test_a_broken_journal_refuses_appends_and_compaction_naming_its_path(journal_path: Path) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "note"})
    journal_path.unlink()
    with pytest.raises(JournalError) as info:
        journal.append({"t": "note"})
    assert info.value.fields == {"path": str(journal_path)}
    assert journal.broken is not None
    for attempt in (lambda: journal.append({"t": "note"}), lambda: journal.rewrite([{"t": "kept"}])):
        with pytest.raises(JournalError) as info:
            attempt()
        assert info.value.fields == {"path": str(journal_path)}
    journal.close()


def test_a_compaction_that_cannot_put_its_file_in_place_names_the_path_and_keeps_the_journal(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "note"})

    def replace(src: str | Path, dst: str | Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(journal_mod.os, "replace", replace)
    with pytest.raises(JournalError) as info:
        journal.rewrite([{"t": "kept"}])
    assert info.value.fields == {"path": str(journal_path)}
    assert journal.broken is None  # the old journal stands and stays in use
    monkeypatch.undo()
    journal.append({"t": "after"})
    journal.close()
    assert [r["t"] for r in scan(journal_path).records] == ["note", "after"]


def test_a_compaction_whose_new_file_cannot_be_reopened_breaks_the_journal_naming_its_path(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "note"})

    def open_private(path: str | os.PathLike[str], flags: int) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(journal_mod, "open_private", open_private)
    with pytest.raises(JournalError) as info:
        journal.rewrite([{"t": "kept"}])
    assert info.value.fields == {"path": str(journal_path)}
    assert journal.broken is not None  # the old descriptor appends to a file no longer at the path
    monkeypatch.undo()
    with pytest.raises(JournalError):
        journal.append({"t": "lost"})
    journal.close()
    assert [r["t"] for r in scan(journal_path).records] == ["kept"]
