"""The restoration rule of spec section 4, under each recovery policy.

The world: a 3-member private group (owner Mia, Max, Uma) and a DM (Uma, Mia).  The group's key
was reset once by Mia before anything else happens, so the group has two epochs of history.  Uma
then resets her own E2E key; the tests vary *when the other members (the holders) are online* and
assert exactly whether Uma regains each room and which messages she can read.

* ``queue`` (current RC): any holder's later tick serves Uma, with no co-presence needed;
* ``live`` (legacy RC): only a holder online at the moment Uma's request is broadcast (at her
  login/handshake) serves her;
* ``backup``: the queue, plus Uma restores everything, history included, with nobody online.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import T0, e2e_deployment

from protocol import POLICIES, Deployment, E2ERoomState, PermissionDenied, check_all

GROUP_HISTORY = ["group, first key", "group, second key"]
DM_HISTORY = ["dm before the reset"]


# ---------------------------------------------------------------------------- helpers


def check(d: Deployment) -> None:
    passwords = [p.account_password for p in d.people.values()]
    assert check_all(d.server, d.clients, d.ledger, passwords=passwords) == []


def read(d: Deployment, uid: str, rid: str) -> list[str | None]:
    out = []
    for m in d.server.messages(rid):
        plain = d.clients[uid].decrypt(m)
        out.append(None if plain is None else plain["msg"])
    return out


@dataclass
class World:
    d: Deployment
    mia: str
    max: str
    uma: str
    group: str
    dm: str

    def restored(self, uid: str | None = None) -> dict[str, bool]:
        client = self.d.clients[uid or self.uma]
        return {"group": client.holds_current_key(self.group), "dm": client.holds_current_key(self.dm)}

    def reads(self, uid: str | None = None) -> dict[str, list[str | None]]:
        uid = uid or self.uma
        return {"group": read(self.d, uid, self.group), "dm": read(self.d, uid, self.dm)}

    def login(self, uid: str, now: float) -> None:
        self.d.login(uid, now=now)

    def logout(self, *uids: str, now: float) -> None:
        for uid in uids:
            self.d.logout(uid, now=now)


NOTHING = {"group": [None, None], "dm": [None]}
EVERYTHING = {"group": GROUP_HISTORY, "dm": DM_HISTORY}


def world(policy: str, *, crypto: str = "symbolic", mia_admin: bool = False) -> World:
    """Everyone online and holding both rooms' keys; the group has two key epochs.  T0 .. T0+10."""
    d = e2e_deployment(policy, crypto=crypto)
    mia, max_, uma = (d.add_user(n) for n in ("mia", "max", "uma"))
    if mia_admin:
        d.server.user(mia).roles = ("user", "admin")
    for i, uid in enumerate((mia, max_, uma)):
        d.login(uid, now=T0 + i)
    group = d.server.create_private_group(mia, "team", [max_, uma], now=T0 + 3)
    dm = d.server.create_direct_message(uma, mia, now=T0 + 3)
    d.pump(T0 + 3)
    d.clients[mia].send(group, GROUP_HISTORY[0], now=T0 + 4)
    d.clients[uma].send(dm, DM_HISTORY[0], now=T0 + 4)
    d.clients[mia].reset_room_key(group, now=T0 + 5)
    d.pump(T0 + 5)
    d.tick(mia, now=T0 + 6)  # queue: Max and Uma get the second key now
    for uid in (max_, uma):  # reload; live: their handshake asks Mia, who answers
        d.logout(uid, now=T0 + 7)
        d.login(uid, now=T0 + 7)
    d.clients[max_].send(group, GROUP_HISTORY[1], now=T0 + 8)
    w = World(d, mia, max_, uma, group, dm)
    for uid in (mia, max_):
        assert w.restored(uid) == {"group": True, "dm": uid == mia}
    assert w.restored() == {"group": True, "dm": True}
    check(d)
    return w


def uma_resets(w: World, *, at: float) -> None:
    """Uma resets her key (logged in, as the UI requires) and is logged out everywhere."""
    assert w.d.clients[w.uma].online
    w.d.reset(w.uma, now=at)
    assert w.restored() == {"group": False, "dm": False}


def queued(w: World, rid: str) -> bool:
    return w.d.server.room(rid).is_waiting(w.uma)


# ---------------------------------------------------------------------------- holders online only before the reset


@pytest.mark.parametrize("policy", POLICIES)
def test_holders_online_only_before_the_reset(policy: str) -> None:
    w = world(policy)
    w.logout(w.mia, w.max, now=T0 + 19)  # the holders leave before the reset ...
    uma_resets(w, at=T0 + 20)
    w.login(w.uma, now=T0 + 30)  # ... and Uma's new keys find nobody
    w.d.tick_all(now=T0 + 40)
    w.d.tick_all(now=T0 + 50)
    assert w.restored() == {"group": False, "dm": False} and w.reads() == NOTHING
    assert queued(w, w.group) == queued(w, w.dm) == (policy != "live")
    assert w.d.clients[w.uma].room_state(w.group) == E2ERoomState.WAITING_KEYS
    check(w.d)
    # a holder comes back while Uma is still online
    w.login(w.mia, now=T0 + 100)
    w.d.tick_all(now=T0 + 110)
    if policy == "live":
        # nothing re-broadcasts Uma's request: still locked out
        assert w.restored() == {"group": False, "dm": False} and w.reads() == NOTHING
    else:
        assert w.restored() == {"group": True, "dm": True} and w.reads() == EVERYTHING
        assert not queued(w, w.group) and not queued(w, w.dm)
    check(w.d)


# ---------------------------------------------------------------------------- holders online only after the reset


@pytest.mark.parametrize("policy", POLICIES)
def test_holder_online_only_after_the_reset_without_copresence(policy: str) -> None:
    w = world(policy)
    w.logout(w.mia, w.max, now=T0 + 15)
    uma_resets(w, at=T0 + 20)
    w.login(w.uma, now=T0 + 30)  # new keys: queued (queue, backup) / request to nobody (live)
    w.logout(w.uma, now=T0 + 35)
    w.login(w.mia, now=T0 + 40)  # Mia alone
    w.d.tick_all(now=T0 + 41)
    if policy != "live":
        # served while Uma is offline: suggestions wait on the server
        for rid in (w.group, w.dm):
            assert w.d.server.subscription(rid, w.uma).e2e_suggested_key is not None
            assert not queued(w, rid)
    w.logout(w.mia, now=T0 + 45)
    w.login(w.uma, now=T0 + 50)  # Uma alone: accepts what waits for her
    if policy == "live":
        assert w.restored() == {"group": False, "dm": False} and w.reads() == NOTHING
    else:
        assert w.restored() == {"group": True, "dm": True} and w.reads() == EVERYTHING
        since = [a.source for a in w.d.clients[w.uma].acquired if a.room_id == w.dm and a.at >= T0 + 20]
        assert since == ["suggestion"]
    check(w.d)


def test_live_restores_only_when_both_are_online_at_a_broadcast() -> None:
    w = world("live")
    w.logout(w.mia, w.max, now=T0 + 15)
    uma_resets(w, at=T0 + 20)
    w.login(w.uma, now=T0 + 30)  # request broadcast to nobody
    w.login(w.mia, now=T0 + 40)  # both online now, but no broadcast happens
    w.d.tick_all(now=T0 + 41)
    assert w.restored() == {"group": False, "dm": False}
    w.logout(w.uma, now=T0 + 50)
    w.login(w.uma, now=T0 + 51)  # the handshake broadcasts; Mia answers at once
    assert w.restored() == {"group": True, "dm": True} and w.reads() == EVERYTHING
    check(w.d)


# ---------------------------------------------------------------------------- holders never online again


@pytest.mark.parametrize("policy", ["queue", "live"])
def test_holders_never_online_again_no_restoration(policy: str) -> None:
    w = world(policy)
    w.logout(w.mia, w.max, now=T0 + 15)
    uma_resets(w, at=T0 + 20)
    for k in range(5):
        w.login(w.uma, now=T0 + 100 * (k + 1))
        w.d.tick_all(now=T0 + 100 * (k + 1) + 10)
        assert w.restored() == {"group": False, "dm": False} and w.reads() == NOTHING
        w.logout(w.uma, now=T0 + 100 * (k + 1) + 20)
    check(w.d)


@pytest.mark.parametrize("crypto", ["symbolic", "real"])
def test_backup_restores_with_nobody_online_including_history(crypto: str) -> None:
    w = world("backup", crypto=crypto)
    w.logout(w.mia, w.max, now=T0 + 15)
    recovery_key = w.d.people[w.uma].recovery_key
    assert recovery_key is not None
    backup_public = w.d.server.user(w.uma).e2e_backup_public_key
    uma_resets(w, at=T0 + 20)
    uma = w.d.clients[w.uma]
    w.login(w.uma, now=T0 + 30)
    assert w.d.server.user(w.uma).e2e_backup_public_key == backup_public  # the backup outlives the reset
    assert not any(c.online for uid, c in w.d.clients.items() if uid != w.uma)
    assert uma.restore_from_backup(recovery_key, now=T0 + 31) == [w.group, w.dm]
    assert w.restored() == {"group": True, "dm": True} and w.reads() == EVERYTHING
    assert not queued(w, w.group) and not queued(w, w.dm)
    first = {}
    for a in uma.acquired:
        if a.at >= T0 + 20:
            first.setdefault(a.room_id, a.source)
    assert first == {w.group: "backup", w.dm: "backup"}
    check(w.d)


def test_backup_restore_without_the_recovery_key_restores_nothing() -> None:
    w = world("backup")
    w.logout(w.mia, w.max, now=T0 + 15)
    uma_resets(w, at=T0 + 20)
    w.login(w.uma, now=T0 + 30)
    wrong = w.d.backend.generate_key_pair(w.d.clients[w.uma].entropy).private_key
    assert w.d.clients[w.uma].restore_from_backup(wrong, now=T0 + 31) == []
    assert w.restored() == {"group": False, "dm": False} and queued(w, w.group) and queued(w, w.dm)
    check(w.d)


# ---------------------------------------------------------------------------- both DM members reset


@pytest.mark.parametrize("policy", POLICIES)
def test_both_dm_members_reset_access_is_lost_until_a_room_key_reset(policy: str) -> None:
    w = world(policy, mia_admin=True)
    d = w.d
    uma_resets(w, at=T0 + 20)
    d.reset(w.mia, now=T0 + 21)
    w.login(w.uma, now=T0 + 30)
    w.login(w.mia, now=T0 + 31)
    assert d.clients[w.max].online  # Max holds the group key but is not in the DM
    for k in range(3):
        d.tick_all(now=T0 + 40 + 10 * k)
    if policy == "backup":
        # each restores the DM from her own backup, with its history
        for uid in (w.uma, w.mia):
            assert d.clients[uid].restore_from_backup(d.people[uid].recovery_key, now=T0 + 80)  # type: ignore[arg-type]
            assert w.restored(uid)["dm"] and w.reads(uid)["dm"] == DM_HISTORY
        check(d)
        return
    # no member holds the DM's current key any more
    for uid in (w.uma, w.mia):
        assert w.restored(uid)["dm"] is False and w.reads(uid)["dm"] == [None]
        assert d.clients[uid].room_state(w.dm) == E2ERoomState.WAITING_KEYS
    check(d)
    # an ordinary DM member may not reset the room key (no role in a DM) ...
    with pytest.raises(PermissionDenied) as exc:
        d.clients[w.uma].reset_room_key(w.dm, now=T0 + 90)
    assert exc.value.code == "error-not-allowed"
    # ... an admin member may: a new key, and no history
    new_kid = d.clients[w.mia].reset_room_key(w.dm, now=T0 + 100)
    d.pump(T0 + 100)
    d.clients[w.mia].send(w.dm, "dm after the room-key reset", now=T0 + 101)
    if policy == "live":
        w.logout(w.uma, now=T0 + 110)
        w.login(w.uma, now=T0 + 111)  # her request reaches Mia, who is online
    else:
        d.tick(w.mia, now=T0 + 110)
    for uid in (w.uma, w.mia):
        assert w.restored(uid)["dm"] and d.clients[uid].held_keys(w.dm).keys() == {new_kid}
        assert w.reads(uid)["dm"] == [None, "dm after the room-key reset"]  # old messages stay unreadable
    check(d)


# ---------------------------------------------------------------------------- history through a holder's old keys


@pytest.mark.parametrize("policy", POLICIES)
def test_history_after_a_room_key_reset_comes_back_through_a_holders_old_keys(policy: str) -> None:
    w = world(policy)
    d = w.d
    kid1, kid2 = (m.content["kid"] for m in d.server.messages(w.group))  # type: ignore[index]
    assert kid1 != kid2 == d.server.room(w.group).e2e_key_id
    w.logout(w.mia, w.max, now=T0 + 15)
    uma_resets(w, at=T0 + 20)
    assert d.server.subscription(w.group, w.uma).old_room_keys is None  # her own old keys are gone
    w.login(w.max, now=T0 + 40)  # Max, the only holder, has kid1 among his old keys
    assert set(d.clients[w.max].held_keys(w.group)) == {kid1, kid2}
    w.login(w.uma, now=T0 + 50)  # live: the request reaches Max now
    d.tick_all(now=T0 + 60)  # queue: Max serves her now
    sub = d.server.subscription(w.group, w.uma)
    assert [k.e2e_key_id for k in sub.old_room_keys] == [kid1]  # type: ignore[union-attr]
    assert set(d.clients[w.uma].held_keys(w.group)) == {kid1, kid2}
    assert w.reads()["group"] == GROUP_HISTORY
    assert w.restored() == {"group": True, "dm": False}  # Max is not in the DM
    check(d)


# ---------------------------------------------------------------------------- a room-key reset under each policy


@pytest.mark.parametrize("policy", POLICIES)
def test_room_key_reset_reaches_online_members_only_through_the_queue(policy: str) -> None:
    """Under ``live`` a room-key reset leaves the online members WAITING_KEYS with nothing asking
    for them (onRoomKeyReset does not re-run the handshake): they wait until they log in again."""
    d = e2e_deployment(policy)
    mia, max_ = (d.add_user(n) for n in ("mia", "max"))
    d.login(mia, now=T0)
    d.login(max_, now=T0 + 1)
    rid = d.server.create_private_group(mia, "team", [max_], now=T0 + 2)
    d.pump(T0 + 2)
    kid2 = d.clients[mia].reset_room_key(rid, now=T0 + 10)
    d.pump(T0 + 10)
    for k in range(3):
        d.tick_all(now=T0 + 20 + 10 * k)
    served = policy != "live"
    assert d.clients[max_].holds_current_key(rid) is served
    assert d.clients[max_].room_state(rid) == (E2ERoomState.READY if served else E2ERoomState.WAITING_KEYS)
    d.logout(max_, now=T0 + 60)
    d.login(max_, now=T0 + 61)  # live: the handshake's request reaches Mia
    assert d.clients[max_].holds_current_key(rid) and kid2 in d.clients[max_].held_keys(rid)
    check(d)


def test_restore_from_backup_leaves_other_devices_pushes_alone() -> None:
    w = world("backup")
    d = w.d
    w.logout(w.mia, now=T0 + 15)
    recovery_key = d.people[w.uma].recovery_key
    uma_resets(w, at=T0 + 20)
    w.login(w.uma, now=T0 + 30)
    # Max (online) creates a room with Uma; the push to his device is pending (not pumped yet)
    new = d.server.create_private_group(w.max, "new", [w.uma], now=T0 + 31)
    d.clients[w.uma].restore_from_backup(recovery_key, now=T0 + 32)  # type: ignore[arg-type]
    d.pump(T0 + 32)
    # Max's device should have handled the push and created the room's key
    assert d.server.room(new).e2e_key_id is not None
    assert d.clients[w.max].holds_current_key(new)
