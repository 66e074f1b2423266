"""The row the outbox hands the forwarder."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Row"]


class Row(NamedTuple):
    """One committed event as the forwarder sends it (a tuple: cheap to make, one per event)."""

    seq: int
    eventid: str
    type: str
    payload: bytes
