"""In-order MQTT acknowledgements over out-of-order Kafka delivery reports.

MQTT 5 (4.6) requires PUBACKs in the order the PUBLISH packets arrived, while Kafka confirms records of
different partitions in any order. The frontier keeps one :class:`Pending` per received QoS 1 message,
in arrival order; a message is *done* when every record made from it is confirmed; :meth:`AckFrontier.
ready` pops the done prefix. A message whose successor is done but which is not waits, and so does its
successor: an acknowledgement is never sent before Kafka has everything up to and including it.

Message ids are per connection and reused after a reconnect, so each entry carries the connection
``generation`` it arrived on; the caller acknowledges only entries of the current generation and drops
the others (the broker redelivers those messages to the persistent session anyway).

Bounded: the broker sends at most Receive Maximum unacknowledged messages per connection, so the deque
holds at most that many per generation still in flight.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["AckFrontier", "Pending"]


@dataclass(slots=True, eq=False)
class Pending:
    """One received MQTT message waiting for its Kafka deliveries."""

    generation: int
    mid: int
    received: float  # monotonic time of arrival, for the ack-latency histogram
    outstanding: int = 0  # records produced and not yet confirmed
    sealed: bool = False  # all records of the message have been produced
    size: int = 0  # payload bytes, released from the byte budget when the entry leaves the frontier

    @property
    def done(self) -> bool:
        return self.sealed and self.outstanding == 0


class AckFrontier:
    def __init__(self) -> None:
        self._queue: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, generation: int, mid: int, received: float) -> Pending:
        entry = Pending(generation, mid, received)
        self._queue.append(entry)
        return entry

    @staticmethod
    def produced(entry: Pending) -> None:
        entry.outstanding += 1

    @staticmethod
    def delivered(entry: Pending) -> None:
        entry.outstanding -= 1

    @staticmethod
    def seal(entry: Pending) -> None:
        entry.sealed = True

    def ready(self) -> list[Pending]:
        """Pop and return the leading entries that are done, oldest first."""
        out: list[Pending] = []
        queue = self._queue
        while queue and queue[0].done:
            out.append(queue.popleft())
        return out
