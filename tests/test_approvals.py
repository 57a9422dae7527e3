from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumos_mcp.approvals import Approval, ApprovalStore
from lumos_mcp.errors import ApprovalInvalidError, ApprovalStoreError

REPO = Path(__file__).resolve().parents[1]
DIGEST = "sha256:" + "ab" * 32


class FakeClock:
    def __init__(self, now: float = 1_714_557_600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> ApprovalStore:
    return ApprovalStore(tmp_path / "state", clock=clock)


def reason_of(info: pytest.ExceptionInfo[ApprovalInvalidError]) -> str:
    return str(info.value.fields["reason"])


def granted(store: ApprovalStore, txid: str = "tx-1", digest: str = DIGEST) -> Approval:
    a = store.request(txid, digest, "vm.swappiness 60 -> 10", lifetime_s=60)
    return store.grant(a.id, by="alice")


# --------------------------------------------------------------------------- request
def test_request_creates_a_pending_approval_that_expires_after_its_lifetime(
    store: ApprovalStore, clock: FakeClock
) -> None:
    a = store.request("tx-1", DIGEST, "vm.swappiness 60 -> 10", lifetime_s=120, requested_by="claude")
    assert re.fullmatch(r"ap-[0-9a-f]{8}", a.id)
    assert (a.status, a.txid, a.digest, a.requested_by) == ("pending", "tx-1", DIGEST, "claude")
    assert (a.created_at, a.expires_at) == (clock.now, clock.now + 120)
    assert store.get(a.id) == a


def test_request_returns_the_live_approval_for_the_same_change_instead_of_a_duplicate(store: ApprovalStore) -> None:
    a = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    assert store.request("tx-1", DIGEST, "s", lifetime_s=60).id == a.id
    store.grant(a.id, by="alice")
    assert store.request("tx-1", DIGEST, "s", lifetime_s=60).id == a.id
    assert len(store.list()) == 1


def test_request_creates_a_new_approval_for_another_digest_or_once_the_old_is_spent(
    store: ApprovalStore, clock: FakeClock
) -> None:
    a = granted(store)
    assert store.request("tx-1", "sha256:other", "s", lifetime_s=60).id != a.id
    store.consume(a.id, "tx-1", DIGEST)
    b = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    assert b.id != a.id
    clock.now += 61
    assert store.request("tx-1", DIGEST, "s", lifetime_s=60).id != b.id


@pytest.mark.parametrize("lifetime_s", [0, -1, float("nan")])
def test_request_refuses_a_lifetime_that_is_not_positive(store: ApprovalStore, lifetime_s: float) -> None:
    with pytest.raises(ValueError):
        store.request("tx-1", DIGEST, "s", lifetime_s=lifetime_s)


# --------------------------------------------------------------------------- decide and consume
def test_a_granted_approval_is_consumed_once_for_its_change(store: ApprovalStore, clock: FakeClock) -> None:
    a = granted(store)
    assert (a.status, a.decided_by, a.decided_at) == ("granted", "alice", clock.now)
    used = store.consume(a.id, "tx-1", DIGEST)
    assert (used.status, used.used_at) == ("used", clock.now)
    with pytest.raises(ApprovalInvalidError) as info:
        store.consume(a.id, "tx-1", DIGEST)
    assert reason_of(info) == "used"
    assert store.get(a.id).status == "used"


@pytest.mark.parametrize(
    ("txid", "digest", "reason"),
    [("tx-1", "sha256:" + "cd" * 32, "digest_mismatch"), ("tx-2", DIGEST, "txid_mismatch")],
)
def test_consume_refuses_an_approval_given_for_another_change(
    store: ApprovalStore, txid: str, digest: str, reason: str
) -> None:
    a = granted(store)
    with pytest.raises(ApprovalInvalidError) as info:
        store.consume(a.id, txid, digest)
    assert reason_of(info) == reason
    assert info.value.fields["approval_id"] == a.id
    assert store.get(a.id).status == "granted"  # still usable for the change it was given for
    assert store.consume(a.id, "tx-1", DIGEST).status == "used"


@settings(max_examples=50, deadline=None)
@given(other=st.text(max_size=80).filter(lambda d: d != DIGEST))
def test_no_other_digest_can_spend_an_approval(tmp_path_factory: pytest.TempPathFactory, other: str) -> None:
    store = ApprovalStore(tmp_path_factory.mktemp("state"), clock=FakeClock())
    a = granted(store)
    with pytest.raises(ApprovalInvalidError) as info:
        store.consume(a.id, "tx-1", other)
    assert reason_of(info) == "digest_mismatch"


def test_consume_refuses_a_pending_or_denied_approval(store: ApprovalStore) -> None:
    pending = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    with pytest.raises(ApprovalInvalidError) as info:
        store.consume(pending.id, "tx-1", DIGEST)
    assert reason_of(info) == "pending"
    denied = store.deny(pending.id, by="bob", note="not on Friday")
    assert (denied.status, denied.decided_by, denied.note) == ("denied", "bob", "not on Friday")
    with pytest.raises(ApprovalInvalidError) as info:
        store.consume(pending.id, "tx-1", DIGEST)
    assert reason_of(info) == "denied"


@pytest.mark.parametrize("op", ["get", "grant", "deny", "consume"])
def test_an_unknown_approval_id_is_refused(store: ApprovalStore, op: str) -> None:
    with pytest.raises(ApprovalInvalidError) as info:
        if op == "get":
            store.get("ap-00000000")
        elif op == "consume":
            store.consume("ap-00000000", "tx-1", DIGEST)
        else:
            getattr(store, op)("ap-00000000", by="alice")
    assert reason_of(info) == "unknown"


@pytest.mark.parametrize(("first", "then", "reason"), [("grant", "grant", "granted"), ("deny", "grant", "denied")])
def test_only_a_pending_approval_can_be_decided(store: ApprovalStore, first: str, then: str, reason: str) -> None:
    a = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    getattr(store, first)(a.id, by="alice")
    with pytest.raises(ApprovalInvalidError) as info:
        getattr(store, then)(a.id, by="mallory")
    assert reason_of(info) == reason
    assert store.get(a.id).decided_by == "alice"


def test_a_used_approval_cannot_be_denied_afterwards(store: ApprovalStore) -> None:
    a = granted(store)
    store.consume(a.id, "tx-1", DIGEST)
    with pytest.raises(ApprovalInvalidError) as info:
        store.deny(a.id, by="bob")
    assert reason_of(info) == "used"


# --------------------------------------------------------------------------- expiry
def test_a_pending_approval_past_expiry_shows_as_expired_and_cannot_be_granted(
    store: ApprovalStore, clock: FakeClock
) -> None:
    a = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    clock.now += 59.999
    assert store.get(a.id).status == "pending"
    clock.now += 0.001
    assert store.get(a.id).status == "expired"
    assert [x.id for x in store.list(status="expired")] == [a.id]
    assert store.list(status="pending") == []
    with pytest.raises(ApprovalInvalidError) as info:
        store.grant(a.id, by="alice")
    assert reason_of(info) == "expired"


def test_a_granted_approval_past_expiry_cannot_be_consumed(store: ApprovalStore, clock: FakeClock) -> None:
    a = granted(store)
    clock.now += 60
    with pytest.raises(ApprovalInvalidError) as info:
        store.consume(a.id, "tx-1", DIGEST)
    assert reason_of(info) == "expired"
    assert store.find_usable("tx-1", DIGEST) is None


def test_expire_due_persists_expiry_and_reports_each_approval_once(store: ApprovalStore, clock: FakeClock) -> None:
    a = store.request("tx-1", DIGEST, "s", lifetime_s=10)
    b = granted(store, txid="tx-2")
    c = store.request("tx-3", DIGEST, "s", lifetime_s=1000)
    clock.now += 100
    assert {x.id for x in store.expire_due()} == {a.id, b.id}
    assert store.expire_due() == []
    clock.now -= 100  # even a clock that steps back cannot revive them: the status is stored
    assert store.get(a.id).status == "expired"
    assert store.get(b.id).status == "expired"
    assert store.get(c.id).status == "pending"


# --------------------------------------------------------------------------- lookups
def test_find_usable_returns_only_a_granted_unexpired_unused_approval_for_the_exact_change(
    store: ApprovalStore,
) -> None:
    assert store.find_usable("tx-1", DIGEST) is None
    pending = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    assert store.find_usable("tx-1", DIGEST) is None
    store.grant(pending.id, by="alice")
    usable = store.find_usable("tx-1", DIGEST)
    assert usable is not None and usable.id == pending.id
    assert store.find_usable("tx-1", "sha256:other") is None
    assert store.find_usable("tx-2", DIGEST) is None
    store.consume(pending.id, "tx-1", DIGEST)
    assert store.find_usable("tx-1", DIGEST) is None


def test_list_filters_by_status_oldest_first(store: ApprovalStore, clock: FakeClock) -> None:
    a = store.request("tx-1", DIGEST, "s", lifetime_s=60)
    clock.now += 1
    b = store.request("tx-2", DIGEST, "s", lifetime_s=60)
    clock.now += 1
    c = granted(store, txid="tx-3")
    assert [x.id for x in store.list()] == [a.id, b.id, c.id]
    assert [x.id for x in store.list(status="pending")] == [a.id, b.id]
    assert [x.id for x in store.list(status="granted")] == [c.id]


# --------------------------------------------------------------------------- elicitation
def test_an_elicited_grant_is_usable_once_and_expires(store: ApprovalStore, clock: FakeClock) -> None:
    a = store.record_elicited("tx-1", DIGEST, "s", granted=True, lifetime_s=30)
    assert (a.status, a.decided_by, a.decided_at, a.expires_at) == ("granted", "elicitation", clock.now, clock.now + 30)
    assert store.consume(a.id, "tx-1", DIGEST).status == "used"
    b = store.record_elicited("tx-1", DIGEST, "s", granted=True, by="client:claude")
    clock.now += 10_000
    with pytest.raises(ApprovalInvalidError) as info:
        store.consume(b.id, "tx-1", DIGEST)
    assert reason_of(info) == "expired"


def test_an_elicited_denial_is_never_usable(store: ApprovalStore) -> None:
    a = store.record_elicited("tx-1", DIGEST, "s", granted=False)
    assert a.status == "denied"
    assert store.find_usable("tx-1", DIGEST) is None
    with pytest.raises(ApprovalInvalidError) as info:
        store.consume(a.id, "tx-1", DIGEST)
    assert reason_of(info) == "denied"


# --------------------------------------------------------------------------- storage
def test_approvals_persist_for_another_store_on_the_same_directory(tmp_path: Path, clock: FakeClock) -> None:
    one = ApprovalStore(tmp_path, clock=clock)
    a = one.request("tx-1", DIGEST, "s", lifetime_s=60)
    two = ApprovalStore(tmp_path, clock=clock)
    two.grant(a.id, by="operator")
    assert one.consume(a.id, "tx-1", DIGEST).status == "used"
    data = orjson.loads((tmp_path / "approvals.json").read_bytes())
    assert data["version"] == 1 and data["approvals"][0]["status"] == "used"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["approvals.json", "approvals.lock"]


def test_the_store_file_is_private_to_its_owner(store: ApprovalStore) -> None:
    store.request("tx-1", DIGEST, "s", lifetime_s=60)
    assert store.path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("content", [b"not json", b'{"version": 2, "approvals": []}', b'{"approvals": [{"id": 1}]}'])
def test_an_unreadable_store_raises_approval_store_error(store: ApprovalStore, content: bytes) -> None:
    store.path.write_bytes(content)
    with pytest.raises(ApprovalStoreError):
        store.list()


def test_threads_requesting_at_once_lose_no_approval(store: ApprovalStore) -> None:
    def work(n: int) -> None:
        for i in range(10):
            store.request(f"tx-{n}-{i}", DIGEST, "s", lifetime_s=60)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.list()) == 60


_CONSUMER = """
import os, sys, time
from pathlib import Path
from lumos_mcp.approvals import ApprovalStore
from lumos_mcp.errors import ApprovalInvalidError
state, approval_id, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
store = ApprovalStore(state)
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
try:
    store.consume(approval_id, "tx-1", sys.argv[4])
    print("won")
except ApprovalInvalidError as exc:
    print(exc.fields["reason"])
"""


def test_two_processes_racing_to_consume_one_approval_exactly_one_wins(tmp_path: Path) -> None:
    store = ApprovalStore(tmp_path / "state")
    a = granted(store)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONSUMER, str(store.state_dir), a.id, str(go), DIGEST],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    go.touch()
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outcomes == ["used", "won"]
    assert store.get(a.id).status == "used"


_OPERATOR = """
import sys
from pathlib import Path
from lumos_mcp.approvals import ApprovalStore
ApprovalStore(Path(sys.argv[1])).grant(sys.argv[2], by="operator", note="looks fine")
"""


def test_an_operator_process_grants_what_the_server_process_requested(tmp_path: Path) -> None:
    store = ApprovalStore(tmp_path / "state")
    a = store.request("tx-1", DIGEST, "vm.swappiness 60 -> 10", lifetime_s=600)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", _OPERATOR, str(store.state_dir), a.id], cwd=REPO, env=env, check=True)
    usable = store.find_usable("tx-1", DIGEST)
    assert usable is not None and (usable.id, usable.decided_by, usable.note) == (a.id, "operator", "looks fine")
