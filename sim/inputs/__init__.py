"""What a run is made of, before it runs: the scenario and the laws and graphs it names.

Owns scenario parsing and validation (:mod:`.scenario`, its keys declared in
:mod:`.scenario_schema`), presence (:mod:`.churn`, its laws in :mod:`.churn_laws`) and recorded
traces (:mod:`.trace`), the questions both answer (:mod:`.presence_queries`), room topologies
(:mod:`.topology`, graph files read by :mod:`.graph_file`) and the seeded streams every other part
draws from (:mod:`.streams`).  May import :mod:`protocol` and third-party libraries, nothing else
of :mod:`sim`.
"""

from .churn import ChurnParams, Presence, PresenceModel
from .scenario import Scenario, ScenarioError, ScenarioErrors, load_scenario, parse_scenario
from .streams import stream, stream_seed
from .topology import RoomSpec, TopologyParams, generate_rooms
from .trace import TracePresence

__all__ = [
    "ChurnParams",
    "Presence",
    "PresenceModel",
    "RoomSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioErrors",
    "TopologyParams",
    "TracePresence",
    "generate_rooms",
    "load_scenario",
    "parse_scenario",
    "stream",
    "stream_seed",
]
