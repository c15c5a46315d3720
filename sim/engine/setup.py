"""From a scenario to the things a run is made of: the server, the presence model, the rooms.

Each function reads one part of the scenario and turns a value the lower layers refuse
(:mod:`sim.inputs.churn`, :mod:`sim.inputs.topology`) into a :class:`~sim.inputs.scenario.ScenarioError`
naming the scenario key it came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from protocol import Server, Settings
from protocol.adversary import AdversarialServer, Attacks
from protocol.crypto import CryptoBackend
from protocol.profiles import get_profile
from protocol.transport import FaultModel

from ..inputs import collegemsg
from ..inputs.churn import ChurnParams, Presence, PresenceModel
from ..inputs.scenario import Scenario, ScenarioError
from ..inputs.streams import stream, stream_seed
from ..inputs.topology import RoomSpec, TopologyParams, generate_rooms
from ..inputs.trace import TracePresence

__all__ = ["churn_params", "fault_model", "make_presence", "make_server", "room_specs", "stationary_online"]

#: ChurnParams' field names -> the scenario keys they come from
_CHURN_KEYS = {
    "model": "model",
    "mean_online_s": "mean_online_minutes",
    "mean_offline_s": "mean_offline_minutes",
    "shape": "shape",
    "sigma": "sigma",
    "rhythm": "rhythm",
    "rhythm_amplitude": "rhythm_amplitude",
    "rhythm_peak_hour": "rhythm_peak_hour",
}

#: the deployment a run simulates: E2EE on and by default for DMs and private groups (spec 2)
_SETTINGS = Settings(
    e2e_enabled=True,
    e2e_default_direct_rooms=True,
    e2e_default_private_rooms=True,
    email_auto_opt_in=False,
)


def make_server(
    sc: Scenario, *, policy: str, attacks: Attacks, backend: CryptoBackend, backup_scrypt_n: int | None
) -> Server:
    """The run's server.  With any attack it is an :class:`AdversarialServer`, honest while the
    deployment is set up (the run turns it at time 0)."""
    profile = get_profile(sc.get("simulation.profile"))
    if backup_scrypt_n is not None and profile.backup_hash == "scrypt":
        profile = dataclasses.replace(profile, backup_scrypt_n=backup_scrypt_n)
    entropy = stream(sc.seed, "server")
    if attacks.any:
        return AdversarialServer(
            _SETTINGS, profile=profile, entropy=entropy, policy=policy, attacks=Attacks(), backend=backend
        )
    return Server(_SETTINGS, profile=profile, entropy=entropy, policy=policy)


def fault_model(sc: Scenario) -> FaultModel:
    f = sc.values["faults"]
    return FaultModel(
        request_loss=f["request_loss"],
        request_duplicate=f["request_duplicate"],
        request_delay=f["request_delay"],
        push_loss=f["push_loss"],
        push_duplicate=f["push_duplicate"],
        push_delay=f["push_delay"],
        delay_mean_s=f["delay_mean_seconds"],
        crash_on_push=f["crash_on_push"],
    )


def churn_params(sc: Scenario) -> list[ChurnParams] | Callable[[int], ChurnParams]:
    """Each user's churn parameters: one set for everybody, or by population class.  Each class
    gets ``round(fraction * users)`` places (the last takes the rest); who takes which place is
    ``population.class_assignment``: ``random`` (a permutation from the "classes" stream),
    ``degree`` (users by the number of rooms they are in, most first, so the first class listed
    gets the best-connected; ties by user number) or ``contiguous`` (u0, u1, ... in order: hubs of
    a generated graph are not spread evenly then, which is why it is not the default)."""
    c = sc.values["churn"]

    def params(where: str, model: str, on_min: float, off_min: float, shape: float) -> ChurnParams:
        try:
            return ChurnParams(
                model=model,
                mean_online_s=on_min * 60.0,
                mean_offline_s=off_min * 60.0,
                shape=shape,
                sigma=c["sigma"],
                rhythm=c["rhythm"],
                rhythm_amplitude=c["rhythm_amplitude"],
                rhythm_peak_hour=c["rhythm_peak_hour"],
            )
        except ValueError as exc:  # "shape: ...": name the scenario key it came from
            name, _, problem = str(exc).partition(":")
            key = _CHURN_KEYS.get(name.strip(), "")
            if key in ("sigma", "rhythm", "rhythm_amplitude", "rhythm_peak_hour"):
                where = "churn"  # these are never per class
            raise ScenarioError(f"{where}.{key}" if key else where, problem.strip() or str(exc)) from None

    if not sc.classes:
        base = params("churn", c["model"], c["mean_online_minutes"], c["mean_offline_minutes"], c["shape"])
        return lambda _user: base
    n = sc.users
    table: list[ChurnParams] = []
    acc = 0.0
    last = None
    for i, cls in enumerate(sc.classes):
        acc += cls.fraction
        last = params(
            f"population.classes[{i}]",
            cls.model,
            cls.mean_online_minutes,
            cls.mean_offline_minutes,
            cls.shape,
        )
        table += [last] * (round(acc * n) - len(table))
    assert last is not None
    table += [last] * (n - len(table))
    assignment = sc.get("population.class_assignment")
    if assignment == "contiguous":
        return table
    if assignment == "random":
        order = list(range(n))
        stream(sc.seed, "classes").shuffle(order)
    else:  # degree: the places in order, to users by room count, most first
        rooms = [0] * n
        for spec in room_specs(sc):
            for m in spec.members:
                rooms[m] += 1
        order = sorted(range(n), key=lambda u: (-rooms[u], u))
    out = [table[0]] * n
    for place, user in enumerate(order):
        out[user] = table[place]
    return out


def make_presence(sc: Scenario) -> PresenceModel:
    """Who is online when: a trace, or the churn model's renewal processes."""
    c = sc.values["churn"]
    try:
        if c["model"] == "trace":
            names = {f"u{i}": i for i in range(sc.users)}
            return TracePresence.from_csv(sc.resolve(c["trace"]), names)
        if c["model"] == "collegemsg":
            return TracePresence(collegemsg_sessions(sc))
        presence = Presence(sc.seed, churn_params(sc), sc.users)
        presence.params(0)
    except ScenarioError:
        raise
    except ValueError as exc:
        raise ScenarioError("churn.trace" if c["model"] == "trace" else "churn", str(exc)) from None
    return presence


def collegemsg_sessions(sc: Scenario) -> dict[int, list[tuple[float, float]]]:
    """The CollegeMsg sessions under the scenario's rule (:func:`sim.inputs.collegemsg.sessions`)."""
    c = sc.values["churn"]
    return collegemsg.sessions(
        sc.users,
        lead_min=c["collegemsg_lead_minutes"],
        linger_min=c["collegemsg_linger_minutes"],
        gap_min=c["collegemsg_gap_minutes"],
        horizon_s=sc.horizon_s,
    )


def make_phone_presence(sc: Scenario) -> PresenceModel:
    """When each phone's app is open: exponential openings and gaps of the ``devices`` means,
    from their own stream (a phone's presence is independent of its owner's web client)."""
    d = sc.values["devices"]
    params = ChurnParams(
        model="exponential",
        mean_online_s=float(d["phone_session_minutes"]) * 60.0,
        mean_offline_s=float(d["phone_gap_minutes"]) * 60.0,
    )
    return Presence(stream_seed(sc.seed, "phone-presence"), lambda _user: params, sc.users)


def stationary_online(sc: Scenario, presence: PresenceModel) -> float | None:
    """The online probability every user has at every moment, independently of the others; None
    when there is none: a trace, a rhythm (presence depends on the hour, and users on each other),
    or classes (each has its own), and then there is no analytic curve either."""
    if not isinstance(presence, Presence) or sc.classes or sc.values["churn"]["rhythm"] != "none":
        return None
    return presence.params(0).stationary_online


def room_specs(sc: Scenario) -> list[RoomSpec]:
    """The rooms to create: the scenario's explicit ones, then the generator's."""
    r = sc.values["rooms"]
    params = TopologyParams(
        generator=r["generator"],
        dms=r["dms"],
        groups=r["groups"],
        group_size=r["group_size"],
        group_size_dist=r["group_size_dist"],
        group_size_max=r["group_size_max"],
        unencrypted_fraction=r["unencrypted_fraction"],
        communities=r["communities"],
        p_in=r["p_in"],
        p_out=r["p_out"],
        ba_m=r["ba_m"],
        ws_k=r["ws_k"],
        ws_p=r["ws_p"],
        file=str(sc.resolve(r["file"])) if r["file"] else None,
        graph=r["graph"] or None,
        mean_degree=r["mean_degree"],
    )
    explicit = [
        RoomSpec(t=e.type, members=e.members, encrypted=e.encrypted, owner=e.members[0])
        for e in sc.explicit_rooms
    ]
    try:
        return generate_rooms(params, sc.users, stream(sc.seed, "topology"), explicit=explicit)
    except ValueError as exc:
        # topology's messages start with the parameter's name ("dms: ...")
        name = str(exc).split(":", 1)[0].strip()
        key = f"rooms.{name}" if name in r else "rooms"
        raise ScenarioError(key, str(exc).split(":", 1)[-1].strip()) from None
