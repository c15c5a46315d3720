"""``keysim check``: the explorer on the real protocol, the state identity, the command line."""

from __future__ import annotations

import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from protocol import POLICIES, Client, Server
from sim.check import STEP_S, Op, Progress, World, apply, canonical, enabled_ops, explore
from sim.check.properties import SETTLE_RATCHET, check_eventually
from sim.cli import main

REPO = Path(__file__).resolve().parents[3]


def world_after(ops: list[Op], *, seed: int = 0, users: int = 3, rooms: int = 2) -> World:
    w = World(users, rooms, "queue", seed=seed)
    for op in ops:
        assert op in enabled_ops(w), op
        assert apply(w, op) == []
    return w


# ------------------------------------------------------------------------------- the real protocol


@pytest.mark.parametrize("policy", ["queue", "live", "backup", "rocketchat", "dehydrated"])
def test_no_violation_at_small_scope(policy: str) -> None:
    # live alone fails liveness under fairness by design: tests/sim/check/test_liveness.py
    result = explore(3, 2, 5, policy, fair=policy != "live")
    assert result.ok, result.report()
    assert result.depth_done == 5 and not result.capped
    assert result.states > 500 and result.transitions > result.states


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_is_clean_at_depth_3(policy: str) -> None:
    result = explore(3, 2, 3, policy)
    assert result.ok, result.report()


@pytest.mark.parametrize("policy", ["queue", "live", "backup", "rocketchat"])
def test_a_phone_beside_the_web_client_is_in_scope(policy: str) -> None:
    # u0's phone signs in, ticks, syncs and is signed out by u0's reset: no violation, and the
    # phone's operations are explored (more states than without it)
    with_phone = explore(3, 2, 4, policy, phones=1, fair=policy != "live")
    assert with_phone.ok, with_phone.report()
    assert with_phone.states > explore(3, 2, 4, policy, fair=False).states


def test_a_phone_is_served_as_a_device_of_its_user() -> None:
    w = World(3, 2, "queue", phones=1)
    phone = w.phone(0)
    assert phone is not None and phone.app == "mobile" and phone.functional and w.phone(1) is None
    kinds = {op.kind for op in enabled_ops(w)}
    assert {"phone_logout"} <= kinds and "phone_login" not in kinds
    assert apply(w, Op("phone_logout", 0)) == [] and not phone.online
    assert apply(w, Op("reset", 1)) == []
    assert apply(w, Op("login", 1)) == []  # u1 is back with a new key pair, waiting in the team
    assert apply(w, Op("phone_login", 0)) == [] and phone.functional
    assert apply(w, Op("phone_tick", 0)) == []  # the phone serves u1 from the queue
    assert apply(w, Op("accept", 1)) == [] and w.client(1).holds_current_key(w.rooms[0])
    with pytest.raises(ValueError, match=r"^phones: must be between 0 and the 3 users, got 4"):
        World(3, 2, "queue", phones=4)


def test_under_ratchet_a_rejoiner_is_served_by_the_next_senders_new_session() -> None:
    # Matrix's semantics (protocol/history_server.py): the rejoiner is not queued for the key it
    # lost; the next sender's new session reaches it.  The settle must send, or every rejoin
    # would be reported as a member never served.
    w = World(3, 2, "ratchet")
    for op in (Op("leave", 1, 0), Op("join", 1, 0)):
        assert apply(w, op) == []
    team = w.rooms[0]
    before = w.d.server.room(team).e2e_key_id
    assert w.d.server.waits_for_session(team, w.users[1])
    found, steps = check_eventually(w)
    assert found == [] and steps == [SETTLE_RATCHET]
    after = w.d.server.room(team).e2e_key_id
    assert after != before
    assert all(after in w.d.clients[u].held_keys(team) for u in w.d.server.room(team).subscriptions)


def test_two_users_and_three_rooms() -> None:
    result = explore(2, 3, 4, "queue")
    assert result.ok, result.report()


def test_max_states_stops_the_search_and_says_so() -> None:
    result = explore(3, 2, 8, "queue", max_states=100)
    assert result.ok and result.capped and result.states == 100 and result.depth_done < 8
    assert "--max-states reached" in result.report()


def test_an_incomplete_search_exits_3_unless_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--max-states", "100", "--quiet"]) == 3
    captured = capsys.readouterr()
    assert "--max-states reached" in captured.out
    assert "incomplete: --max-states stopped the search in depth" in captured.err and "exit 3" in captured.err
    assert main(["check", "--max-states", "100", "--quiet", "--accept-incomplete"]) == 0
    # a search that reaches its depth is complete whatever the cap
    assert main(["check", "--depth", "2", "--max-states", "100000", "--quiet"]) == 0


def test_progress_is_reported_as_states_are_found() -> None:
    seen: list[Progress] = []
    result = explore(3, 2, 3, "queue", progress=seen.append)
    assert [p.states for p in seen] == list(range(2, result.states + 1))  # one call per new state
    assert [p.level for p in seen] == sorted(p.level for p in seen) and seen[-1].level == 2
    assert all(p.states_per_second > 0 for p in seen) and seen[-1].transitions <= result.transitions


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_prints_what_was_found_so_far(workers: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "check", "--depth", "12", "--workers", workers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    time.sleep(4.0)  # past start-up, into the search
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    states = int(re.search(r"states explored\s+([\d,]+)", out)[1].replace(",", ""))  # type: ignore[index]
    assert states > 100
    assert re.search(rf"interrupted: the search stopped at {states:,} states in depth \d+, incomplete", out)


def test_workers_find_what_one_worker_finds() -> None:
    one, two = explore(3, 2, 5, "queue"), explore(3, 2, 5, "queue", workers=2)
    assert one.ok and two.ok and (one.workers, two.workers) == (1, 2)
    figures = ("states", "transitions", "depth_done", "coverage", "fair_checked", "exhausted")
    assert [getattr(one, f) for f in figures] == [getattr(two, f) for f in figures]
    # stopped by the cap: the same states in the same order, so the same counters
    capped = [explore(3, 2, 8, "queue", max_states=500, workers=n) for n in (1, 2)]
    assert all(r.capped and r.states == 500 for r in capped)
    assert capped[0].transitions == capped[1].transitions and capped[0].depth_done == capped[1].depth_done


def test_stats_prints_the_search_without_and_with_symmetry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--depth", "4", "--quiet", "--stats"]) == 0
    out = capsys.readouterr().out
    before, after = explore(3, 2, 4, "queue", symmetry=False), explore(3, 2, 4, "queue")
    off = re.search(r"^3x2 d4 queue\s+off\s+([\d,]+)\s+([\d,]+)\s+[\d.]+\s+[\d,]+\s+yes$", out, re.M)
    on = re.search(r"^3x2 d4 queue\s+2 renamings\s+([\d,]+)\s+([\d,]+)\s+[\d.]+\s+[\d,]+\s+yes$", out, re.M)
    assert off and on, out
    assert (off[1], off[2]) == (f"{before.states:,}", f"{before.transitions:,}")
    assert (on[1], on[2]) == (f"{after.states:,}", f"{after.transitions:,}")
    assert f"states {before.states / after.states:.2f}x fewer" in out and "at most 2x" in out
    assert before.states > after.states


def test_no_symmetry_explores_renamed_states_apart(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--depth", "3", "--quiet", "--no-symmetry"]) == 0
    out = capsys.readouterr().out
    assert f"states explored  {explore(3, 2, 3, 'queue', symmetry=False).states:,}" in out
    assert "symmetry reduction" not in out
    assert main(["check", "--depth", "3", "--quiet", "--no-symmetry", "--stats"]) == 2
    assert "--stats compares the search without and with symmetry" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("users", "rooms", "depth", "message"),
    [(1, 1, 3, "users"), (7, 1, 3, "users"), (3, 0, 3, "rooms"), (3, 99, 3, "rooms"), (3, 2, -1, "depth")],
)
def test_bad_scope(users: int, rooms: int, depth: int, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}:"):
        explore(users, rooms, depth, "queue")


# -------------------------------------------------------------------------------- state identity


def test_interleavings_reaching_the_same_state_are_one_state() -> None:
    a = world_after([Op("logout", 1), Op("logout", 2)])
    b = world_after([Op("logout", 2), Op("logout", 1)])
    assert canonical(a) == canonical(b)


def test_random_names_and_time_do_not_matter() -> None:
    # different seeds: other key tokens, kids, ids, login tokens, passwords
    ops = [Op("reset", 1), Op("login", 1), Op("tick", 0)]
    a, b = world_after(ops, seed=1), world_after(ops, seed=2)
    assert a.d.server.user(a.users[1]).e2e_public_key != b.d.server.user(b.users[1]).e2e_public_key
    assert canonical(a) == canonical(b)
    b.now += 1000 * STEP_S
    assert canonical(a) == canonical(b)


def test_who_did_it_matters() -> None:
    # u0 owns the team and has TOTP, u1 does not; u1 and u2 joined the team in that order
    assert canonical(world_after([Op("logout", 0)])) != canonical(world_after([Op("logout", 1)]))
    assert canonical(world_after([Op("logout", 1)])) != canonical(world_after([Op("logout", 2)]))


def test_different_states_differ() -> None:
    base = canonical(world_after([]))
    assert canonical(world_after([Op("logout", 1)])) != base
    assert canonical(world_after([Op("reset", 1), Op("login", 1)])) != base  # u1 waits for the key
    # the same key handed back: after u1 is served the state is the start again, up to names
    served = world_after([Op("reset", 1), Op("login", 1), Op("tick", 0)])
    assert served.client(1).holds_current_key(served.rooms[0])
    assert canonical(served) != canonical(world_after([Op("reset", 1), Op("login", 1)]))


def test_the_explorer_deduplicates_interleavings() -> None:
    # depth 2 from the start: far fewer states than operation sequences
    result = explore(3, 2, 2, "queue", eventually=False)
    assert result.ok
    assert result.states < result.transitions


# ---------------------------------------------------------------------------------- command line


def test_cli_prints_statistics_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--users", "3", "--rooms", "2", "--depth", "3", "--policy", "backup"]) == 0
    out = capsys.readouterr().out
    for label in ("states explored", "transitions", "states/second", "elapsed", "no violation found"):
        assert label in out


def test_cli_bad_scope_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--users", "1"]) == 2
    assert "--users: must be between 2 and 6" in capsys.readouterr().err
    assert main(["check", "--workers", "0"]) == 2
    assert "--workers: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["check", "--phones", "4"]) == 2
    assert "--phones: must be between 0 and the 3 users, got 4" in capsys.readouterr().err


def test_cli_exits_1_with_a_numbered_trace_on_a_planted_fault(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the fault: a reset without the 2FA gate
    monkeypatch.setattr(
        Server, "e2e_reset_own_key", lambda self, uid, code, **kw: self._reset_user_e2e_key(uid, kw["now"])
    )
    assert main(["check", "--depth", "3"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION" in out and "two_factor_gate: u0 reset its E2E key with no 2FA code" in out
    assert "shortest trace (1 steps):" in out
    assert "  0. start: u0 (TOTP), u1, u2 log in; rooms team (u0, u1, u2); dm u1+u2 (u1, u2)" in out
    assert "  1. u0 resets its E2E key" in out


def test_the_alike_plan_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["check", "--plan", "alike", "--depth", "3", "--quiet", "--stats"]) == 0
    out = capsys.readouterr().out
    assert "keysim check: policy queue, 3 users, 2 rooms (alike), depth 3" in out
    assert re.search(r"^3x2 \(alike\) d3 queue\s+12 renamings\s", out, re.M) and "at most 12x" in out
    # every user has TOTP: the planted fault (a reset without the 2FA gate) shows on a renamed
    # world, and the emitted test rebuilds the alike scope to replay it
    monkeypatch.setattr(
        Server, "e2e_reset_own_key", lambda self, uid, code, **kw: self._reset_user_e2e_key(uid, kw["now"])
    )
    emitted = tmp_path / "test_replay.py"
    assert main(["check", "--plan", "alike", "--depth", "2", "--quiet", "--emit-test", str(emitted)]) == 1
    out = capsys.readouterr().out
    assert "0. start: u0 (TOTP), u1 (TOTP), u2 (TOTP) log in; rooms team (u0, u1, u2); g1 (u0, u1, u2)" in out
    assert "two_factor_gate: u0 reset its E2E key with no 2FA code" in out
    assert "plan='alike'" in emitted.read_text()
    runpy.run_path(str(emitted))["test_the_counterexample_still_happens"]()
    with pytest.raises(SystemExit) as refused:
        main(["check", "--plan", "everyone"])
    assert refused.value.code == 2 and "--plan: invalid choice: 'everyone'" in capsys.readouterr().err


def test_a_counterexample_reads_as_a_sequence_with_the_keys_it_moved(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    original = Client._import_group_key

    def trusting(self: Client, session: Any, wrapped: str, source: str, now: float) -> bool:
        opened = original(self, session, wrapped, source, now)
        return True if source in ("suggestion", "backup") else opened

    monkeypatch.setattr(Client, "_import_group_key", trusting)  # accepts a key that does not open
    svg, emitted = tmp_path / "trace.svg", tmp_path / "test_replay.py"
    argv = ["check", "--depth", "4", "--quiet", "--svg", str(svg), "--emit-test", str(emitted)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    listing = out[out.index("shortest trace (3 steps):") :].splitlines()
    assert listing[1:] == [
        "  0. start: u0 (TOTP), u1, u2 log in; rooms team (u0, u1, u2); dm u1+u2 (u1, u2)",
        "  1. u0 resets its E2E key",
        "       u0 has no key pair on the server",
        "       u0: online, READY -> offline, DISABLED",
        "       server: no key of team for u0 any more",
        "       u0's device drops k1 of team",
        "  2. a holder's suggestion fetched before u0's reset (for its old key pair) arrives in team",
        "       server: holds a suggested key k1 of team for u0",
        "  3. u0 logs in and unlocks E2EE (saving a new password if asked)",
        "       u0 has a new key pair",
        "       u0: offline, DISABLED -> online, READY",
        "       server: stores k1 of team wrapped for u0",
        "       server: the suggestion for u0 in team is gone",
        "       VIOLATION stored_keys_open: u0's E2EKey in team does not open",
        f"sequence diagram: {svg}",
        f"replay it: pytest {emitted}",
    ]
    # the diagram: a lane per user and the server, every step written out
    words = [t.strip() for t in ElementTree.parse(svg).getroot().itertext() if t.strip()]
    assert {"u0", "u1", "u2", "server", "1. u0 resets its E2E key", "u0's device drops k1 of team"} <= set(
        words
    )
    assert "VIOLATION stored_keys_open: u0's E2EKey in team does not open" in words
    # the emitted test replays the trace: it passes while the fault is there ...
    module = runpy.run_path(str(emitted))
    module["test_the_counterexample_still_happens"]()
    # ... and fails once it is gone
    monkeypatch.setattr(Client, "_import_group_key", original)
    with pytest.raises(AssertionError):
        module["test_the_counterexample_still_happens"]()


def test_narrate_says_which_key_moved_where() -> None:
    from sim.check.narrate import listing, narrate

    _, steps = narrate(3, 2, "queue", 0, [Op("reset", 1), Op("login", 1), Op("tick", 0), Op("accept", 1)])
    assert listing(steps)[:14] == [
        "  1. u1 resets its E2E key",
        "       u1 has no key pair on the server",
        "       u1: online, READY -> offline, DISABLED",
        "       server: no key of team for u1 any more",
        "       u1's device drops k1 of team",
        "       server: no key of dm u1+u2 for u1 any more",
        "       u1's device drops k2 of dm u1+u2",  # kids named by first appearance, room by room
        "  2. u1 logs in and unlocks E2EE (saving a new password if asked)",
        "       u1 has a new key pair",
        "       u1: offline, DISABLED -> online, READY",
        "  3. u0's client runs its key-distribution loop",
        "       server: stores k1 of team wrapped for u1",
        "       u1's device now holds k1 of team",
        "  4. u1's client syncs and accepts the keys suggested to it",
    ]
    assert all(not s.violations for s in steps) and steps[3].moved == ()


def test_coverage_reports_each_restoration_path_with_its_shortest_depth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = explore(3, 2, 3, "queue")
    # reset, login, then a holder's tick hands the key over (suggestion); or the user resets the
    # room key itself (created); nothing shorter reaches either
    assert result.coverage == (("created", 3), ("suggestion", 3))
    assert explore(3, 2, 2, "queue").coverage == ()
    assert main(["check", "--depth", "3", "--quiet"]) == 0
    assert "  restoration paths reached  created (depth 3), suggestion (depth 3)" in capsys.readouterr().out
