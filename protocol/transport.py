"""The network between devices and the server, with faults.

Theory of operation.  By default a :class:`~protocol.Client` calls the server directly and the
harness delivers every push at once: a perfect network.  A :class:`Transport` puts a
:class:`FaultModel` in between, for the two kinds of traffic whose loss Rocket.Chat's client
tolerates without an answer:

* fire-and-forget requests (REST POSTs: provide suggested keys, accept, reject, update a group
  key, upload a backup key): lost, duplicated, or held back and delivered later, which reorders
  them against later traffic;
* the server's pushes (subscription changes, live key requests): the same.

Held items wait in a queue ordered by their due time; the driver calls :meth:`Transport.deliver`
with the current time (``next_due`` says when).  Everything is drawn from the injected entropy, so
a run is reproducible.  A device crash and a server restart are not transport faults: see
:meth:`protocol.Client.crash` and :meth:`protocol.Server.restart`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .entropy import Entropy
from .errors import ProtocolError, ValidationError

if TYPE_CHECKING:
    from .room_server import Notification
    from .server import Server

__all__ = ["FaultModel", "Transport"]

#: Requests whose answer the client only logs: a transport may lose, repeat or hold them back.
FIRE_AND_FORGET = frozenset(
    {
        "e2e_provide_users_suggested_group_keys",
        "e2e_accept_suggested_group_key",
        "e2e_reject_suggested_group_key",
        "e2e_update_group_key",
        "e2e_backup_upload",
        "e2e_dehydrated_send",
        "e2e_contacts_answer",
    }
)


_PROBABILITIES = (
    "request_loss",
    "request_duplicate",
    "request_delay",
    "push_loss",
    "push_duplicate",
    "push_delay",
    "crash_on_push",
)


@dataclass(frozen=True, slots=True)
class FaultModel:
    """Probabilities per message, and the mean delay (seconds) of a held one."""

    request_loss: float = 0.0
    request_duplicate: float = 0.0
    request_delay: float = 0.0
    push_loss: float = 0.0
    push_duplicate: float = 0.0
    push_delay: float = 0.0
    delay_mean_s: float = 30.0
    #: a device that receives a subscription push crashes before handling it (for example after
    #: the server stored a suggestion and before the device accepts it)
    crash_on_push: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "request_loss",
            "request_duplicate",
            "request_delay",
            "push_loss",
            "push_duplicate",
            "push_delay",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValidationError("error-invalid-params", f"{name}: must be a probability, got {value!r}")
        if not self.delay_mean_s > 0:
            raise ValidationError(
                "error-invalid-params", f"delay_mean_s: must be > 0, got {self.delay_mean_s!r}"
            )

    @property
    def any(self) -> bool:
        return any(
            getattr(self, n) > 0
            for n in (
                "request_loss",
                "request_duplicate",
                "request_delay",
                "push_loss",
                "push_duplicate",
                "push_delay",
            )
        )


@dataclass(order=True, slots=True)
class _Held:
    due: float
    seq: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False)


class Transport:
    def __init__(self, server: Server, faults: FaultModel, entropy: Entropy) -> None:
        self.server = server
        self.faults = faults
        self._rng = entropy
        self._held: list[_Held] = []
        self._seq = 0
        self.counters = {
            "requests": 0,
            "requests_lost": 0,
            "requests_duplicated": 0,
            "requests_delayed": 0,
            "pushes": 0,
            "pushes_lost": 0,
            "pushes_duplicated": 0,
            "pushes_delayed": 0,
            "crashes": 0,
        }

    # -- requests

    def post(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, now: float) -> None:
        """Send a fire-and-forget request; the server may see it never, once, twice, or later."""
        if method not in FIRE_AND_FORGET:
            raise ValidationError("error-invalid-params", f"{method} is not a fire-and-forget request")
        self.counters["requests"] += 1
        f = self.faults
        fate = self._fate("requests", f.request_loss, f.request_duplicate, f.request_delay)
        if fate is None:
            return
        copies, delayed = fate
        if delayed:
            self._hold(now, "request", (method, args, kwargs, copies))
        else:
            self._call(method, args, kwargs, copies)

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A request the client awaits (RC ``await sdk.rest.post``): a lost one fails with
        ``error-network`` for the caller to handle; a held-back one only makes it wait longer,
        so it arrives now."""
        self.counters["requests"] += 1
        if self._rng.random() < self.faults.request_loss:
            self.counters["requests_lost"] += 1
            raise ProtocolError("error-network", f"{method}: the request was lost")
        getattr(self.server, method)(*args, **kwargs)

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], copies: int) -> None:
        call: Callable[..., Any] = getattr(self.server, method)
        for _ in range(copies):
            try:
                call(*args, **kwargs)
            except ProtocolError:
                # the server refused it (a duplicate accept finds no suggestion, a late request a
                # changed room): the client, long gone, would only have logged the error response
                continue

    # -- pushes

    def pushes(self, now: float) -> list[Notification]:
        """The server's pushes that reach devices now, faults applied; held ones come later."""
        f = self.faults
        out: list[Notification] = []
        for note in self.server.drain_notifications():
            self.counters["pushes"] += 1
            fate = self._fate("pushes", f.push_loss, f.push_duplicate, f.push_delay)
            if fate is None:
                continue
            copies, delayed = fate
            if delayed:
                self._hold(now, "push", (note, copies))
            else:
                out += [note] * copies
        return out

    def _fate(self, kind: str, loss: float, duplicate: float, delay: float) -> tuple[int, bool] | None:
        """Lost (None), or how many copies arrive and whether they are held back."""
        if self._rng.random() < loss:
            self.counters[f"{kind}_lost"] += 1
            return None
        copies = 1
        if self._rng.random() < duplicate:
            copies = 2
            self.counters[f"{kind}_duplicated"] += 1
        delayed = self._rng.random() < delay
        if delayed:
            self.counters[f"{kind}_delayed"] += 1
        return copies, delayed

    def crashes(self) -> bool:
        """Whether the device receiving a push now crashes instead (``crash_on_push``)."""
        crash = self.faults.crash_on_push > 0 and self._rng.random() < self.faults.crash_on_push
        if crash:
            self.counters["crashes"] += 1
        return crash

    # -- held traffic

    def _hold(self, now: float, kind: str, payload: Any) -> None:
        self._seq += 1
        due = now + self._rng.expovariate(1.0 / self.faults.delay_mean_s)
        heapq.heappush(self._held, _Held(due, self._seq, kind, payload))

    @property
    def next_due(self) -> float | None:
        return self._held[0].due if self._held else None

    def deliver(self, now: float) -> list[Notification]:
        """Carry out the held requests that are due and return the held pushes that are due."""
        pushes: list[Notification] = []
        while self._held and self._held[0].due <= now:
            item = heapq.heappop(self._held)
            if item.kind == "request":
                method, args, kwargs, copies = item.payload
                self._call(method, args, kwargs, copies)
            else:
                note, copies = item.payload
                pushes += [note] * copies
        return pushes
