"""Scenario files: TOML parsed once into frozen dataclasses, validated key by key.

Every key a scenario may contain is declared in :data:`SCHEMA` (:mod:`sim.inputs.scenario_schema`)
with its type, default and check, and documented in ``scenarios/README.md``.  :func:`load_scenario`
reads a file, rejects unknown keys, wrong types, impossible values and missing files with a
:class:`ScenarioError` that names the dotted key (``churn.mean_online_minutes: must be > 0, got
-5``), and returns a :class:`Scenario`.  Paths inside a scenario are relative to the scenario file.
May import the standard library and :mod:`sim.inputs.scenario_schema`, nothing else of :mod:`sim`.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .collegemsg import STUDENTS, TRACE_DAYS
from .graph_file import NETWORKX_GRAPHS
from .scenario_schema import SCHEMA, TABLES, Key, _seed

__all__ = [
    "SCHEMA",
    "TABLES",
    "ExplicitRoom",
    "Scenario",
    "ScenarioError",
    "ScenarioErrors",
    "ScriptedReset",
    "UserClass",
    "load_scenario",
]


class ScenarioError(ValueError):
    """A scenario key is unknown, mistyped or impossible; ``key`` is its dotted name."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.message))

    @property
    def problems(self) -> tuple[ScenarioError, ...]:
        """Every problem found (here one: this)."""
        return (self,)


class ScenarioErrors(ScenarioError):
    """Several problems in one scenario, all found in one reading and listed one per line;
    ``key`` and ``message`` are the first one's."""

    def __init__(self, problems: Iterable[ScenarioError]) -> None:
        self._problems = tuple(problems)
        first = self._problems[0]
        lines = "".join(f"\n  {p}" for p in self._problems)
        ValueError.__init__(self, f"{len(self._problems)} problems:{lines}")
        self.key, self.message = first.key, first.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._problems,))

    @property
    def problems(self) -> tuple[ScenarioError, ...]:
        return self._problems


class _Problems:
    """Collects the problems of a document, so that all are reported at once."""

    def __init__(self) -> None:
        self.found: list[ScenarioError] = []

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        try:
            yield
        except ScenarioError as exc:
            self.found.extend(exc.problems)

    def raise_any(self) -> None:
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise ScenarioErrors(self.found)


def _unknown(where: str, name: str, known: Iterable[str], what: str = "key") -> ScenarioError:
    """An unknown key or section, with the nearest known one when there is a near one."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        hint = f" (did you mean {close[0]!r}?)"
    elif what == "section":
        hint = f" (known: {', '.join(known)})"
    else:
        hint = ""
    if what == "key" and not close:  # the right key in the wrong section
        homes = [s for s, keys in SCHEMA.items() if name in keys and f"{s}.{name}" != where]
        if homes:
            hint = f" (it is a key of [{homes[0]}]: {homes[0]}.{name})"
    return ScenarioError(where, f"unknown {what}{hint}")


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
    #: the overrides (dotted key -> value) applied to the file it was read from, in order
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    @property
    def name(self) -> str:
        return str(self.get("simulation.name"))

    @property
    def run_id(self) -> str:
        return str(self.get("simulation.run_id"))

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
        _derive_run_id(values, self.raw, self.overrides, reseeded=seed != self.seed)
        return replace(self, values=values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Scenario:
        """The scenario re-read from what it was parsed from, with ``overrides`` (dotted keys)
        applied; checked as :func:`load_scenario` checks a file."""
        changes = {**self.overrides, **overrides}
        return parse_scenario(apply_overrides(self.raw, overrides), self.path, overrides=changes)

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


def parse_scenario(
    data: Mapping[str, Any], path: Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> Scenario:
    """Validate an already-parsed TOML document; ``overrides`` are those already applied to it
    (:func:`apply_overrides`), which the run's id records."""
    problems = _Problems()
    values = _section_values(data, problems)
    for dotted in TABLES:  # their rows' own keys; the rows are read below
        with problems.collect():
            _table(data, dotted)
    problems.raise_any()  # the checks below read several keys: each must be valid first
    if not values["simulation"]["name"]:
        values["simulation"]["name"] = path.stem if path is not None else "scenario"
    overrides = dict(overrides or {})
    _derive_run_id(values, data, overrides)
    with problems.collect():
        _check_rhythm_peak_hour(values["churn"])
    scenario = Scenario(path=path, values=values, raw=dict(data), overrides=overrides)
    users = values["population"]["users"]
    user_of = _user_names(users)
    explicit: tuple[ExplicitRoom, ...] = ()
    scripted: tuple[ScriptedReset, ...] = ()
    classes: tuple[UserClass, ...] = ()
    with problems.collect():
        explicit = _explicit_rooms(data, user_of)
    with problems.collect():
        scripted = _scripted_resets(data, user_of)
    with problems.collect():
        classes = _user_classes(data, values["churn"])
    if values["churn"]["model"] == "trace":
        with problems.collect():
            _check_named_file(scenario, "churn.trace", "churn.model = 'trace'")
    if values["rooms"]["generator"] in ("file", "bipartite"):
        with problems.collect():
            _check_named_file(scenario, "rooms.file", f"rooms.generator = {values['rooms']['generator']!r}")
    if "collegemsg" in (values["churn"]["model"], values["rooms"]["generator"]):
        with problems.collect():
            _check_collegemsg(values)
    rooms = values["rooms"]
    if rooms["generator"] == "networkx" and rooms["graph"] not in NETWORKX_GRAPHS:
        problems.found.append(
            ScenarioError(
                "rooms.graph", f"must be one of {', '.join(NETWORKX_GRAPHS)}, got {rooms['graph']!r}"
            )
        )
    if rooms["generator"] != "networkx" and rooms["graph"]:
        problems.found.append(
            ScenarioError(
                "rooms.graph", f"is read only with rooms.generator = 'networkx', not {rooms['generator']!r}"
            )
        )
    with problems.collect():
        _check_group_size(values["rooms"], users)
    with problems.collect():
        _check_scripted_times(scripted, values["simulation"]["horizon_days"])
    problems.raise_any()
    return replace(scenario, explicit_rooms=explicit, scripted_resets=scripted, classes=classes)


def _scripted_resets(
    data: Mapping[str, Any], user_of: Callable[[str, Any], int]
) -> tuple[ScriptedReset, ...]:
    problems = _Problems()
    out = []
    for i, row in enumerate(_table(data, "resets.scripted")):
        with problems.collect():
            out.append(ScriptedReset(user_of(f"resets.scripted[{i}].user", row["user"]), float(row["at"])))
    problems.raise_any()
    return tuple(out)


#: overrides that the run id already shows, or that name it
_NOT_IN_DIGEST = frozenset({"simulation.seed", "simulation.run_id"})


def _derive_run_id(
    values: dict[str, dict[str, Any]],
    data: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    reseeded: bool = False,
) -> None:
    """Set ``simulation.run_id``: ``<name>-<seed>`` for the file as it is, ``<name>-<seed>-<digest>``
    when overrides changed it, the digest being the first 8 hex digits of the SHA-256 of the
    overrides' canonical JSON, so two runs of one file with different overrides never share an id
    (or a default output directory).  An id given as an override is kept; one written in the file
    (a run's resolved ``scenario.toml``) only while nothing changes it: another seed
    (``reseeded``) or any override derives a new one."""
    if "simulation.run_id" in overrides:
        return
    given = data.get("simulation")
    others = [k for k in overrides if k != "simulation.run_id"]
    if isinstance(given, Mapping) and given.get("run_id") and not others and not reseeded:
        return
    sim = values["simulation"]
    run_id = f"{sim['name']}-{sim['seed']}"
    changed = {k: v for k, v in overrides.items() if k not in _NOT_IN_DIGEST}
    if changed:
        text = json.dumps(changed, sort_keys=True, separators=(",", ":"), default=str)
        run_id += "-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    sim["run_id"] = run_id


def _section_values(data: Mapping[str, Any], problems: _Problems) -> dict[str, dict[str, Any]]:
    """Every section's keys, given or defaulted.  Unknown sections and keys and bad values go to
    ``problems`` (a bad value's key keeps its default, so that the rest is still checked)."""
    values: dict[str, dict[str, Any]] = {}
    for section in data:
        if section not in SCHEMA:
            problems.found.append(_unknown(section, section, SCHEMA, "section"))
    for section, keys in SCHEMA.items():
        given = data.get(section, {})
        if not isinstance(given, Mapping):
            problems.found.append(ScenarioError(section, "must be a table"))
            given = {}
        tables = {t.split(".", 1)[1] for t in TABLES if t.startswith(section + ".")}
        for key in given:
            if key not in keys and key not in tables:
                problems.found.append(_unknown(f"{section}.{key}", key, [*keys, *tables]))
        values[section] = {}
        for key, decl in keys.items():
            values[section][key] = decl.default
            if key in given:
                with problems.collect():
                    values[section][key] = _check_value(f"{section}.{key}", decl, given[key])
    return values


def _check_rhythm_peak_hour(churn: Mapping[str, Any]) -> None:
    if churn["rhythm"] != "weekly" and churn["rhythm_peak_hour"] >= 24:
        raise ScenarioError(
            "churn.rhythm_peak_hour",
            f"must be in [0, 24) (an hour of the day; up to 168 with rhythm = 'weekly'), "
            f"got {churn['rhythm_peak_hour']}",
        )


def _user_names(users: int) -> Callable[[str, Any], int]:
    """``user_of(dotted, name)``: the index of user ``name`` (``u0 .. u{users-1}``), or an error."""
    index = {f"u{i}": i for i in range(users)}

    def user_of(dotted: str, name: Any) -> int:
        if not isinstance(name, str) or name not in index:
            raise ScenarioError(dotted, f"unknown user {name!r} (users are u0 .. u{users - 1})")
        return index[name]

    return user_of


def _explicit_rooms(data: Mapping[str, Any], user_of: Callable[[str, Any], int]) -> tuple[ExplicitRoom, ...]:
    """The ``[[rooms.explicit]]``, members as user indices."""
    problems = _Problems()
    explicit = []
    for i, row in enumerate(_table(data, "rooms.explicit")):
        where = f"rooms.explicit[{i}]"
        t, members, encrypted = row["type"], row["members"], row["encrypted"]
        with problems.collect():
            ids = tuple(user_of(f"{where}.members", m) for m in members)
            if len(set(ids)) != len(ids) or len(ids) < 2:
                raise ScenarioError(f"{where}.members", "needs at least two distinct users")
            if t == "d" and len(ids) != 2:
                raise ScenarioError(f"{where}.members", "a DM has exactly two members")
            explicit.append(ExplicitRoom(t, ids, encrypted))
    problems.raise_any()
    return tuple(explicit)


def _user_classes(data: Mapping[str, Any], churn: Mapping[str, Any]) -> tuple[UserClass, ...]:
    """The ``[[population.classes]]``; a class's zero or empty values fall back to ``churn``'s."""
    classes = tuple(
        UserClass(
            row["name"],
            float(row["fraction"]),
            row["model"] or churn["model"],
            float(row["mean_online_minutes"] or churn["mean_online_minutes"]),
            float(row["mean_offline_minutes"] or churn["mean_offline_minutes"]),
            float(row["shape"] or churn["shape"]),
        )
        for row in _table(data, "population.classes")
    )
    if classes and abs(sum(c.fraction for c in classes) - 1.0) > 1e-9:
        raise ScenarioError(
            "population.classes", f"fractions must add up to 1, got {sum(c.fraction for c in classes)}"
        )
    return classes


def _check_named_file(scenario: Scenario, dotted: str, when: str) -> None:
    """The file key ``dotted`` names, required ``when`` it is read, exists."""
    name = scenario.get(dotted)
    if not name:
        raise ScenarioError(dotted, f"is required when {when}")
    if not scenario.resolve(name).is_file():
        raise ScenarioError(dotted, f"file not found: {scenario.resolve(name)}")


def _check_collegemsg(values: Mapping[str, Any]) -> None:
    key = "churn.model" if values["churn"]["model"] == "collegemsg" else "rooms.generator"
    if values["population"]["users"] < STUDENTS:
        raise ScenarioError(
            "population.users", f"must be >= {STUDENTS} with {key} = 'collegemsg' (its students)"
        )
    days = values["simulation"]["horizon_days"]
    if values["churn"]["model"] == "collegemsg" and days > TRACE_DAYS:
        raise ScenarioError(
            "simulation.horizon_days",
            f"must be <= {TRACE_DAYS} with churn.model = 'collegemsg' (the trace's length)",
        )


def _check_group_size(rooms: Mapping[str, Any], users: int) -> None:
    if rooms["groups"] and rooms["group_size"] > rooms["group_size_max"]:
        raise ScenarioError(
            "rooms.group_size", f"must be <= rooms.group_size_max ({rooms['group_size_max']})"
        )
    if rooms["groups"] and rooms["group_size"] > users:
        raise ScenarioError("rooms.group_size", f"must be <= population.users ({users})")


def _check_scripted_times(scripted: tuple[ScriptedReset, ...], horizon_days: float) -> None:
    horizon = horizon_days * 86400
    for r in scripted:
        if r.at > horizon:
            raise ScenarioError("resets.scripted", f"at = {r.at} is past the horizon ({horizon} s)")


def _table(data: Mapping[str, Any], dotted: str) -> list[dict[str, Any]]:
    section, key = dotted.split(".")
    table = data.get(section, {})
    if not isinstance(table, Mapping):  # reported as "must be a table" by _section_values
        return []
    rows = table.get(key, [])
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise ScenarioError(dotted, "must be an array of tables ([[...]])")
    problems = _Problems()
    out = []
    for i, row in enumerate(rows):
        where = f"{dotted}[{i}]"
        for k in row:
            if k not in TABLES[dotted]:
                problems.found.append(_unknown(f"{where}.{k}", k, TABLES[dotted]))
        parsed = {}
        for k, decl in TABLES[dotted].items():
            if k not in row:
                if decl.default is None:
                    problems.found.append(ScenarioError(f"{where}.{k}", "is required"))
                parsed[k] = decl.default
            else:
                with problems.collect():
                    parsed[k] = _check_value(f"{where}.{k}", decl, row[k])
        out.append(parsed)
    problems.raise_any()
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
    return parse_scenario(apply_overrides(data, overrides or {}), path.resolve(), overrides=overrides)


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a scenario document with ``overrides`` (``section.key`` -> value) set."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for dotted, value in overrides.items():
        section, _, key = str(dotted).partition(".")
        if not key:
            raise ScenarioError(str(dotted), "an override needs section.key")
        table = out.setdefault(section, {})
        if not isinstance(table, dict):
            raise ScenarioError(section, "must be a table")
        table[key] = value
    return out
