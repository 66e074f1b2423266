"""Event ids and timestamps made at the edge (private: use ``edgebridge.envelope``)."""

from __future__ import annotations

import os
import time

_clock_cache: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with milliseconds and ``Z``: ``2024-05-01T12:00:00.123Z``."""
    global _clock_cache
    sec, ms = divmod(time.time_ns() // 1_000_000, 1000)
    cached_sec, prefix = _clock_cache  # one tuple, so concurrent callers never pair two seconds
    if cached_sec != sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _clock_cache = (sec, prefix)
    return f"{prefix}.{ms:03d}Z"


def new_event_id() -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, then 74 random bits (time-ordered, unique).

    ``os.urandom``, not ``random``: a simulator that seeds ``random`` must not repeat ids.
    """
    rand = int.from_bytes(os.urandom(10))  # 80 bits, 74 of them used
    ms = (time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF
    rand_a, rand_b = (rand >> 62) & 0xFFF, rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b  # version 7, variant 10
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
