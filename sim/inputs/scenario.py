"""Scenario files: TOML parsed once into frozen dataclasses, validated key by key.

Every key a scenario may contain is declared in :data:`SCHEMA` with its type, default and check,
and documented in ``scenarios/README.md``.  :func:`load_scenario` reads a file, rejects unknown
keys, wrong types, impossible values and missing files with a :class:`ScenarioError` that names the
dotted key (``churn.mean_online_minutes: must be > 0, got -5``), and returns a :class:`Scenario`.
Paths inside a scenario are relative to the scenario file.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA",
    "ExplicitRoom",
    "Scenario",
    "ScenarioError",
    "ScriptedReset",
    "UserClass",
    "load_scenario",
]


class ScenarioError(ValueError):
    """A scenario key is unknown, mistyped or impossible; ``key`` is its dotted name."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


Check = Callable[[Any], str | None]


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be > 0, got {v}"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else f"must be >= 0, got {v}"


def _fraction(v: Any) -> str | None:
    return None if 0 <= v <= 1 else f"must be between 0 and 1, got {v}"


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}, got {v!r}"

    return check


def _at_least(n: float) -> Check:
    def check(v: Any) -> str | None:
        return None if v >= n else f"must be >= {n}, got {v}"

    return check


def _amplitude(v: Any) -> str | None:
    return None if 0 <= v < 1 else f"must be >= 0 and < 1, got {v}"


#: seeds are stored in the tables as signed 64-bit integers
SEED_LIMIT = 2**63


def _seed(v: Any) -> str | None:
    return None if 0 <= v < SEED_LIMIT else f"must be in [0, 2**63), got {v}"


def _run_name(v: Any) -> str | None:
    """A run's name becomes a directory name (``runs/<name>-<seed>/``): no separators."""
    if v == "" or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
        return None
    return f"must be letters, digits, '.', '_' or '-' (starting with a letter or digit), got {v!r}"


@dataclass(frozen=True, slots=True)
class Key:
    type: type | tuple[type, ...]
    default: Any
    check: Check | None = None
    doc: str = ""


#: section -> key -> declaration.  Tables of tables (``[[rooms.explicit]]``,
#: ``[[resets.scripted]]``, ``[[population.classes]]``) are declared in :data:`TABLES`.
SCHEMA: dict[str, dict[str, Key]] = {
    "simulation": {
        "name": Key(str, "", _run_name, "run name (default: the file name)"),
        "horizon_days": Key((int, float), 30.0, _positive, "simulated time, days"),
        "seed": Key(int, 0, _seed, "root seed; --seed overrides"),
        "policy": Key(str, "queue", _one_of("queue", "live", "backup"), "recovery policy"),
        "crypto": Key(str, "symbolic", _one_of("symbolic", "real"), "crypto backend"),
        "profile": Key(str, "rocketchat", _one_of("rocketchat", "hardened"), "2FA profile"),
        "tick_seconds": Key((int, float), 10.0, _positive, "key-distribution interval (RC: 10 s)"),
    },
    "population": {
        "users": Key(int, 100, _at_least(2), "number of users, named u0 .. u{N-1}"),
    },
    "churn": {
        "model": Key(str, "exponential", _one_of("exponential", "weibull", "lognormal", "trace"), ""),
        "mean_online_minutes": Key((int, float), 60.0, _positive, ""),
        "mean_offline_minutes": Key((int, float), 300.0, _positive, ""),
        "shape": Key((int, float), 0.6, _positive, "Weibull shape k"),
        "sigma": Key((int, float), 1.0, _positive, "lognormal sigma"),
        "rhythm": Key(str, "none", _one_of("none", "daily", "weekly"), ""),
        "rhythm_amplitude": Key((int, float), 0.0, _amplitude, ""),
        "rhythm_peak_hour": Key(
            (int, float),
            20.0,
            lambda v: None if 0 <= v < 168 else f"must be in [0, 168), got {v}",
            "hour of the day (daily) or of the week (weekly)",
        ),
        "trace": Key(str, "", None, "CSV user,online_at,offline_at (model = trace)"),
    },
    "rooms": {
        "generator": Key(
            str, "random", _one_of("random", "communities", "barabasi_albert", "watts_strogatz", "file"), ""
        ),
        "dms": Key(int, 0, _non_negative, ""),
        "groups": Key(int, 0, _non_negative, ""),
        "group_size": Key(int, 5, _at_least(2), ""),
        "group_size_dist": Key(str, "fixed", _one_of("fixed", "poisson", "geometric", "uniform"), ""),
        "group_size_max": Key(int, 50, _at_least(2), ""),
        "unencrypted_fraction": Key((int, float), 0.0, _fraction, ""),
        "communities": Key(int, 10, _at_least(1), ""),
        "p_in": Key((int, float), 0.1, _fraction, ""),
        "p_out": Key((int, float), 0.001, _fraction, ""),
        "ba_m": Key(int, 2, _at_least(1), ""),
        "ws_k": Key(int, 4, _at_least(2), ""),
        "ws_p": Key((int, float), 0.1, _fraction, ""),
        "file": Key(str, "", None, "edge list or GraphML (generator = file)"),
    },
    "resets": {
        "rate_per_user_day": Key((int, float), 0.0, _non_negative, "own-key resets while online"),
        "forgot_password_rate_per_user_day": Key(
            (int, float), 0.0, _non_negative, "new-device logins with a forgotten E2E password"
        ),
        "twofa_fraction": Key((int, float), 0.0, _fraction, "users with TOTP enabled"),
        "lost_authenticator_rate_per_user_day": Key(
            (int, float), 0.0, _non_negative, "TOTP users losing their authenticator and backup codes"
        ),
        "admin_delay_hours": Key(
            (int, float), 24.0, _non_negative, "until an admin resets a locked-out user's TOTP"
        ),
        "recovery_key_kept_fraction": Key(
            (int, float), 1.0, _fraction, "policy backup: users who still have their recovery key"
        ),
    },
    "membership": {
        "join_rate_per_room_day": Key((int, float), 0.0, _non_negative, ""),
        "leave_rate_per_room_day": Key((int, float), 0.0, _non_negative, ""),
    },
    "recovery": {
        "owner_resets_lost_rooms": Key(
            bool, False, None, "an online owner resets the key of a room nobody can serve"
        ),
        "room_key_rotation_per_room_day": Key(
            (int, float), 0.0, _non_negative, "owners rotate the keys of private groups they hold"
        ),
    },
    "traffic": {
        "messages_per_room_day": Key((int, float), 0.0, _non_negative, ""),
    },
    "faults": {
        "request_loss": Key((int, float), 0.0, _fraction, "fire-and-forget requests lost"),
        "request_duplicate": Key((int, float), 0.0, _fraction, "... delivered twice"),
        "request_delay": Key((int, float), 0.0, _fraction, "... held back (reordered)"),
        "push_loss": Key((int, float), 0.0, _fraction, "server pushes lost"),
        "push_duplicate": Key((int, float), 0.0, _fraction, "... delivered twice"),
        "push_delay": Key((int, float), 0.0, _fraction, "... held back (reordered)"),
        "delay_mean_seconds": Key((int, float), 30.0, _positive, "mean hold-back"),
        "crash_on_push": Key((int, float), 0.0, _fraction, "a device crashes before handling a push"),
        "server_restarts_per_day": Key((int, float), 0.0, _non_negative, "the server restarts"),
    },
    "adversary": {
        "substitute_public_keys": Key(bool, False, None, "the server hands out its own key (#42088)"),
        "plant_suggestions": Key(bool, False, None, "the server plants room keys as suggestions"),
        "withhold_queue": Key(bool, False, None, "the server tells holders nobody waits"),
        "replay_suggestions": Key(bool, False, None, "the server replays old suggestions"),
        "mitigation": Key(str, "none", _one_of("none", "fingerprints", "signed", "both"), "client defences"),
    },
}

TABLES: dict[str, dict[str, Key]] = {
    "rooms.explicit": {
        "type": Key(str, None, _one_of("p", "d"), ""),
        "members": Key(list, None, None, ""),
        "encrypted": Key(bool, True, None, ""),
    },
    "resets.scripted": {
        "user": Key(str, None, None, ""),
        "at": Key((int, float), None, _non_negative, "seconds"),
    },
    "population.classes": {
        "name": Key(str, None, None, ""),
        "fraction": Key((int, float), None, _fraction, ""),
        "model": Key(str, "", _one_of("", "exponential", "weibull", "lognormal"), ""),
        "mean_online_minutes": Key((int, float), 0.0, _non_negative, ""),
        "mean_offline_minutes": Key((int, float), 0.0, _non_negative, ""),
        "shape": Key((int, float), 0.0, _non_negative, ""),
    },
}


@dataclass(frozen=True, slots=True)
class ExplicitRoom:
    type: str
    members: tuple[int, ...]
    encrypted: bool


@dataclass(frozen=True, slots=True)
class ScriptedReset:
    user: int
    at: float


@dataclass(frozen=True, slots=True)
class UserClass:
    name: str
    fraction: float
    model: str
    mean_online_minutes: float
    mean_offline_minutes: float
    shape: float


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario: ``values[section][key]`` plus the parsed tables."""

    path: Path | None
    values: Mapping[str, Mapping[str, Any]]
    explicit_rooms: tuple[ExplicitRoom, ...] = ()
    scripted_resets: tuple[ScriptedReset, ...] = ()
    classes: tuple[UserClass, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    @property
    def name(self) -> str:
        return str(self.get("simulation.name"))

    @property
    def seed(self) -> int:
        return int(self.get("simulation.seed"))

    @property
    def horizon_s(self) -> float:
        return float(self.get("simulation.horizon_days")) * 86400.0

    @property
    def users(self) -> int:
        return int(self.get("population.users"))

    def with_seed(self, seed: int) -> Scenario:
        problem = _seed(seed)
        if problem:
            raise ScenarioError("--seed", problem)
        values = {s: dict(v) for s, v in self.values.items()}
        values["simulation"]["seed"] = seed
        return replace(self, values=values)

    def resolve(self, relative: str) -> Path:
        base = self.path.parent if self.path is not None else Path.cwd()
        return (base / relative).resolve()


def _check_value(dotted: str, decl: Key, value: Any) -> Any:
    types = decl.type if isinstance(decl.type, tuple) else (decl.type,)
    if isinstance(value, bool) and bool not in types:
        raise ScenarioError(dotted, f"must be {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise ScenarioError(dotted, f"must be {_type_name(types)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ScenarioError(dotted, f"must be finite, got {value}")
    if decl.check is not None:
        problem = decl.check(value)
        if problem:
            raise ScenarioError(dotted, problem)
    return float(value) if float in types and isinstance(value, int) else value


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}
    if set(types) == {int, float}:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def parse_scenario(data: Mapping[str, Any], path: Path | None = None) -> Scenario:
    """Validate an already-parsed TOML document."""
    values: dict[str, dict[str, Any]] = {}
    for section in data:
        if section not in SCHEMA:
            raise ScenarioError(section, f"unknown section (known: {', '.join(SCHEMA)})")
    for section, keys in SCHEMA.items():
        given = data.get(section, {})
        if not isinstance(given, Mapping):
            raise ScenarioError(section, "must be a table")
        tables = {t.split(".", 1)[1] for t in TABLES if t.startswith(section + ".")}
        for key in given:
            if key not in keys and key not in tables:
                raise ScenarioError(f"{section}.{key}", "unknown key")
        values[section] = {
            key: _check_value(f"{section}.{key}", decl, given[key]) if key in given else decl.default
            for key, decl in keys.items()
        }
    if not values["simulation"]["name"]:
        values["simulation"]["name"] = path.stem if path is not None else "scenario"
    churn = values["churn"]
    if churn["rhythm"] != "weekly" and churn["rhythm_peak_hour"] >= 24:
        raise ScenarioError(
            "churn.rhythm_peak_hour",
            f"must be in [0, 24) (an hour of the day; up to 168 with rhythm = 'weekly'), "
            f"got {churn['rhythm_peak_hour']}",
        )
    scenario = Scenario(path=path, values=values, raw=dict(data))
    users = values["population"]["users"]
    index = {f"u{i}": i for i in range(users)}

    def user_of(dotted: str, name: Any) -> int:
        if not isinstance(name, str) or name not in index:
            raise ScenarioError(dotted, f"unknown user {name!r} (users are u0 .. u{users - 1})")
        return index[name]

    explicit = []
    for i, row in enumerate(_table(data, "rooms.explicit")):
        where = f"rooms.explicit[{i}]"
        t, members, encrypted = row["type"], row["members"], row["encrypted"]
        ids = tuple(user_of(f"{where}.members", m) for m in members)
        if len(set(ids)) != len(ids) or len(ids) < 2:
            raise ScenarioError(f"{where}.members", "needs at least two distinct users")
        if t == "d" and len(ids) != 2:
            raise ScenarioError(f"{where}.members", "a DM has exactly two members")
        explicit.append(ExplicitRoom(t, ids, encrypted))
    scripted = tuple(
        ScriptedReset(user_of(f"resets.scripted[{i}].user", row["user"]), float(row["at"]))
        for i, row in enumerate(_table(data, "resets.scripted"))
    )
    classes = tuple(
        UserClass(
            row["name"],
            float(row["fraction"]),
            row["model"] or values["churn"]["model"],
            float(row["mean_online_minutes"] or values["churn"]["mean_online_minutes"]),
            float(row["mean_offline_minutes"] or values["churn"]["mean_offline_minutes"]),
            float(row["shape"] or values["churn"]["shape"]),
        )
        for row in _table(data, "population.classes")
    )
    if classes and abs(sum(c.fraction for c in classes) - 1.0) > 1e-9:
        raise ScenarioError(
            "population.classes", f"fractions must add up to 1, got {sum(c.fraction for c in classes)}"
        )
    churn = values["churn"]
    if churn["model"] == "trace":
        if not churn["trace"]:
            raise ScenarioError("churn.trace", "is required when churn.model = 'trace'")
        if not scenario.resolve(churn["trace"]).is_file():
            raise ScenarioError("churn.trace", f"file not found: {scenario.resolve(churn['trace'])}")
    rooms = values["rooms"]
    if rooms["generator"] == "file":
        if not rooms["file"]:
            raise ScenarioError("rooms.file", "is required when rooms.generator = 'file'")
        if not scenario.resolve(rooms["file"]).is_file():
            raise ScenarioError("rooms.file", f"file not found: {scenario.resolve(rooms['file'])}")
    if rooms["groups"] and rooms["group_size"] > rooms["group_size_max"]:
        raise ScenarioError(
            "rooms.group_size", f"must be <= rooms.group_size_max ({rooms['group_size_max']})"
        )
    if rooms["groups"] and rooms["group_size"] > users:
        raise ScenarioError("rooms.group_size", f"must be <= population.users ({users})")
    horizon = values["simulation"]["horizon_days"] * 86400
    for r in scripted:
        if r.at > horizon:
            raise ScenarioError("resets.scripted", f"at = {r.at} is past the horizon ({horizon} s)")
    return replace(scenario, explicit_rooms=tuple(explicit), scripted_resets=scripted, classes=classes)


def _table(data: Mapping[str, Any], dotted: str) -> list[dict[str, Any]]:
    section, key = dotted.split(".")
    rows = data.get(section, {}).get(key, [])
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise ScenarioError(dotted, "must be an array of tables ([[...]])")
    out = []
    for i, row in enumerate(rows):
        where = f"{dotted}[{i}]"
        for k in row:
            if k not in TABLES[dotted]:
                raise ScenarioError(f"{where}.{k}", "unknown key")
        parsed = {}
        for k, decl in TABLES[dotted].items():
            if k not in row:
                if decl.default is None:
                    raise ScenarioError(f"{where}.{k}", "is required")
                parsed[k] = decl.default
            else:
                parsed[k] = _check_value(f"{where}.{k}", decl, row[k])
        out.append(parsed)
    return out


def load_scenario(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file; ``overrides`` maps dotted keys to values."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError("scenario", f"file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError("scenario", f"{path} is not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ScenarioError(dotted, "an override needs section.key")
        data.setdefault(section, {})[key] = value
    return parse_scenario(data, path.resolve())
