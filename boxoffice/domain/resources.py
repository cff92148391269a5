"""Which of several interchangeable resources (rooms of a type) is free for an interval."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from boxoffice.domain.timeslots import Interval

K = TypeVar("K", bound=Hashable)


class Bookings:
    """One resource's busy intervals, sorted by start and not overlapping each other
    (the database's exclusion constraint keeps a room's live sessions apart)."""

    def __init__(self, busy: Sequence[Interval]) -> None:
        self.busy = sorted(busy, key=lambda i: i.start_at)
        self.starts = [i.start_at for i in self.busy]

    @classmethod
    def merged(cls, busy: Sequence[Interval]) -> Bookings:
        """From intervals that may overlap (a calendar's events): overlapping ones joined."""
        joined: list[Interval] = []
        for interval in sorted(busy, key=lambda i: i.start_at):
            if joined and interval.start_at < joined[-1].end_at:
                last = joined[-1]
                joined[-1] = Interval(last.start_at, max(last.end_at, interval.end_at))
            else:
                joined.append(interval)
        return cls(joined)

    def is_free(self, interval: Interval) -> bool:
        # Only the last interval starting before ours, and the first starting at or
        # after it, can overlap: the others end earlier or start later.
        at = bisect_left(self.starts, interval.start_at)
        if at < len(self.busy) and self.busy[at].start_at < interval.end_at:
            return False
        return not (at > 0 and self.busy[at - 1].end_at > interval.start_at)


def first_free(resources: Mapping[K, Bookings], interval: Interval) -> K | None:
    """The first resource, in the mapping's order, with nothing overlapping ``interval``."""
    for key, bookings in resources.items():
        if bookings.is_free(interval):
            return key
    return None
