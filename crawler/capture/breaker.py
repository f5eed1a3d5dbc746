"""Per-host circuit breaker: a host that accepts connections but never answers must not hold
a crawl for hours.

Without it, every URL of such a host waits the full timeout, then again for each retry. The
breaker counts consecutive hangs per host (no answer in time, a connection that never
opened, a body that stalled); any answer resets the count. After ``hang_limit`` hangs in a
row the host is paused for ``hang_pause`` seconds; then one request probes it. Each further
trip doubles the pause; after ``hang_trips`` trips the host is given up for the rest of the
crawl and its remaining URLs are recorded as not fetched because the host hung (reason
``host-hung`` in the crawl's shortfall). Pure bookkeeping: the crawl acts on the verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Verdict(StrEnum):
    """What the crawl should do with a host after one more result."""

    GO_ON = "go-on"  # nothing to do
    PAUSE = "pause"  # start no request to the host for ``HostBreakers.pause_for`` seconds
    GIVE_UP = "give-up"  # fetch nothing more from the host in this crawl


@dataclass(slots=True)
class _HostState:
    hangs: int = 0  # consecutive
    trips: int = 0
    given_up: bool = False
    tripped_at: datetime | None = None  # requests started before the last trip do not count


@dataclass(slots=True)
class HostBreakers:
    """Breakers of every host of one crawl."""

    hang_limit: int = 5
    hang_pause: float = 30.0
    hang_trips: int = 3
    _hosts: dict[str, _HostState] = field(default_factory=dict)

    def record(self, host: str, started: datetime, *, hung: bool) -> Verdict:
        """Take one result from ``host`` of a request sent at ``started`` (``hung``: it got
        no timely answer). Hangs of requests already in flight when the host tripped are
        the same outage, not new evidence, and are not counted again."""
        state = self._hosts.setdefault(host, _HostState())
        if state.given_up:
            return Verdict.GIVE_UP
        if not hung:
            state.hangs = 0
            return Verdict.GO_ON
        if state.tripped_at is not None and started < state.tripped_at:
            return Verdict.GO_ON
        state.hangs += 1
        if state.hangs < self.hang_limit:
            return Verdict.GO_ON
        state.trips += 1
        state.tripped_at = datetime.now(started.tzinfo)
        state.hangs = self.hang_limit - 1  # after the pause, one more hang trips it again
        if state.trips >= self.hang_trips:
            state.given_up = True
            return Verdict.GIVE_UP
        return Verdict.PAUSE

    def pause_for(self, host: str) -> float:
        """Return how long to pause ``host`` after its latest trip (doubling each time)."""
        trips = self._hosts[host].trips if host in self._hosts else 1
        return float(self.hang_pause * 2 ** max(0, trips - 1))

    def given_up(self, host: str) -> bool:
        """Return True if ``host`` is given up for this crawl."""
        state = self._hosts.get(host)
        return state is not None and state.given_up
