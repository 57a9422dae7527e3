"""Gaps of the approval store that mutation testing found: defaults, sub-second lifetimes, the
fields of a refusal, and where the store writes its temporary file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from lumos_mcp import approvals as approvals_mod
from lumos_mcp.approvals import DEFAULT_ELICITED_LIFETIME_S, ApprovalStore
from lumos_mcp.errors import ApprovalInvalidError, ApprovalStoreError, StateDirUnsafeError

DIGEST = "sha256:" + "ef" * 32
NOW = 1_714_557_600.0


@pytest.fixture
def store(tmp_path: Path) -> ApprovalStore:
    return ApprovalStore(tmp_path / "state", clock=lambda: NOW)


def test_a_sub_second_lifetime_is_accepted(store: ApprovalStore) -> None:
    a = store.request("tx-1", DIGEST, "s", lifetime_s=0.5)
    assert a.expires_at == NOW + 0.5
    e = store.record_elicited("tx-2", DIGEST, "s", granted=True, lifetime_s=0.5)
    assert e.expires_at == NOW + 0.5


@pytest.mark.parametrize("lifetime_s", [0, -1, float("nan")])
def test_an_elicited_approval_refuses_a_lifetime_that_is_not_positive(store: ApprovalStore, lifetime_s: float) -> None:
    with pytest.raises(ValueError):
        store.record_elicited("tx-1", DIGEST, "s", granted=True, lifetime_s=lifetime_s)
    assert store.list() == []


def test_defaults_name_the_agent_as_requester_and_leave_no_note(store: ApprovalStore) -> None:
    a = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    assert a.requested_by == "agent"
    assert store.grant(a.id, by="alice").note == ""
    e = store.record_elicited("tx-2", DIGEST, "s", granted=False)
    assert (e.requested_by, e.decided_by, e.status) == ("agent", "elicitation", "denied")
    assert e.expires_at == NOW + DEFAULT_ELICITED_LIFETIME_S
    d = store.request("tx-3", DIGEST, "s", lifetime_s=60)
    assert store.deny(d.id, by="bob").note == ""


def test_a_refused_decision_names_the_approval_and_its_status(store: ApprovalStore) -> None:
    a = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    store.deny(a.id, by="bob")
    with pytest.raises(ApprovalInvalidError) as info:
        store.grant(a.id, by="alice")
    assert (info.value.code, info.value.fields["approval_id"], info.value.fields["reason"]) == (
        "approval_invalid",
        a.id,
        "denied",
    )


def test_the_store_writes_its_temporary_file_beside_the_store(
    store: ApprovalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename is atomic only within one filesystem: the temp file must live in the state dir."""
    sources: list[str] = []
    real_replace = os.replace

    def recording_replace(src: str, dst: str) -> None:
        sources.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(approvals_mod.os, "replace", recording_replace)
    store.request("tx-1", DIGEST, "s", lifetime_s=60)
    assert [Path(s).parent for s in sources] == [store.state_dir]
    assert sorted(p.name for p in store.state_dir.iterdir() if not p.name.endswith(".lock")) == ["approvals.json"]


def test_a_store_creates_missing_parent_directories_private_to_its_owner(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "state"
    store = ApprovalStore(state, clock=lambda: NOW)
    store.request("tx-1", DIGEST, "s", lifetime_s=60)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_a_state_directory_that_cannot_be_made_is_refused_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateDirUnsafeError) as info:
        ApprovalStore(blocker / "state")
    assert (info.value.fields["path"], info.value.fields["problem"]) == (str(blocker / "state"), "unusable")


def test_a_directory_in_place_of_the_store_file_is_refused_naming_it(store: ApprovalStore) -> None:
    store.path.mkdir()
    with pytest.raises(StateDirUnsafeError) as info:
        store.list()
    assert (info.value.fields["path"], info.value.fields["problem"]) == (str(store.path), "not_a_regular_file")


def test_an_unreadable_store_file_raises_approval_store_error_naming_it(store: ApprovalStore) -> None:
    store.path.write_bytes(b'{"version": 1, "approvals": [{"id": 3}]}')
    with pytest.raises(ApprovalStoreError) as info:
        store.list()
    assert (info.value.code, info.value.fields["path"]) == (ApprovalStoreError.code, str(store.path))
    assert isinstance(info.value.detail, str) and info.value.detail


def test_a_failed_write_raises_approval_store_error_naming_the_store_and_leaves_no_temp_file(
    store: ApprovalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(approvals_mod.os, "fsync", full_disk)
    with pytest.raises(ApprovalStoreError) as info:
        store.request("tx-1", DIGEST, "s", lifetime_s=60)
    assert info.value.fields["path"] == str(store.path)
    assert isinstance(info.value.detail, str) and info.value.detail
    monkeypatch.undo()
    assert sorted(p.name for p in store.state_dir.iterdir()) == ["approvals.lock"]
    assert store.list() == []


def test_closed_approvals_are_kept_for_the_retention_counted_from_when_they_ended(tmp_path: Path) -> None:
    # a denial ends at its decision, an approval never decided at its expiry (found by the mutation run on main)
    now = [NOW]
    store = ApprovalStore(tmp_path / "state", clock=lambda: now[0], retention_s=100)
    early = store.request("tx-1", DIGEST, "s", lifetime_s=1000)
    late = store.request("tx-2", DIGEST, "s", lifetime_s=1000)
    lapsed = store.request("tx-3", DIGEST, "s", lifetime_s=50)
    now[0] = NOW + 10
    store.deny(early.id, by="operator")
    now[0] = NOW + 60
    store.deny(late.id, by="operator")
    now[0] = NOW + 140  # early was denied 130 s ago, late 80 s ago, lapsed expired 90 s ago
    fresh = store.request("tx-4", DIGEST, "s", lifetime_s=1000)  # every write prunes
    assert {a.id for a in store.list()} == {late.id, lapsed.id, fresh.id}


def test_a_granted_approval_is_never_pruned_even_when_no_closed_one_is_kept(tmp_path: Path) -> None:
    store = ApprovalStore(tmp_path / "state", clock=lambda: NOW, keep_closed=0)
    granted = store.grant(store.request("tx-1", DIGEST, "s", lifetime_s=600).id, by="operator")
    denied = store.deny(store.request("tx-2", DIGEST, "s", lifetime_s=600).id, by="operator")
    pending = store.request("tx-3", DIGEST, "s", lifetime_s=600)  # this write prunes the denied one
    assert {a.id for a in store.list()} == {granted.id, pending.id}
    assert denied.id not in {a.id for a in store.list()}
