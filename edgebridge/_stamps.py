"""Event ids and time stamps: the one UUIDv7 generator and the one RFC 3339 formatter of the project.

Public through :mod:`edgebridge.envelope` (ids, ``now_rfc3339``, ``rfc3339_ms``), :mod:`edgebridge.logs`
(``ts``) and :mod:`edgebridge.deadletters` (``rfc3339``, for ``dlq_time``); nothing else formats a time.

Time stamps are UTC with milliseconds and ``Z``: ``2024-05-01T12:00:00.123Z``, the milliseconds truncated
(as ``datetime.isoformat(timespec="milliseconds")`` does). The text of the last second and of the last
millisecond formatted is cached: events and log lines come by the thousand per second, and a Kafka
backlog's records share their millisecond by the hundred.
"""

from __future__ import annotations

import math
import os
import time

__all__ = ["new_event_id", "new_event_ids", "now_rfc3339", "rfc3339", "rfc3339_ms"]

# Each cache is one tuple, swapped whole, so that concurrent callers never pair a key with another's text.
_second: tuple[int, str] = (-1, "")
_milli: tuple[int, str] = (-1, "")
_strftime, _gmtime, _time_ns, _urandom = time.strftime, time.gmtime, time.time_ns, os.urandom


def rfc3339_ms(ms: int) -> str:
    """Unix milliseconds (a Kafka timestamp) as RFC 3339 UTC with milliseconds: ``...T12:00:00.123Z``."""
    global _second, _milli
    last = _milli
    if last[0] == ms:
        return last[1]
    sec, milli = divmod(ms, 1000)
    second = _second
    if second[0] != sec:
        second = _second = (sec, _strftime("%Y-%m-%dT%H:%M:%S", _gmtime(sec)))
    text = f"{second[1]}.{milli:03d}Z"
    _milli = (ms, text)
    return text


def rfc3339(wall: float) -> str:
    """A Unix time (``time.time()``) as RFC 3339 UTC with milliseconds; the same text as
    ``datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")`` with ``Z`` for ``+00:00``
    (rounded to the microsecond half-even first, then cut to the millisecond)."""
    frac, sec = math.modf(wall)
    us = round(frac * 1e6)
    return rfc3339_ms(int(sec) * 1000 + us // 1000)  # floor division: right below 0 too


def now_rfc3339() -> str:
    """The current time as RFC 3339 UTC with milliseconds: ``2024-05-01T12:00:00.123Z``."""
    return rfc3339_ms(_time_ns() // 1_000_000)


# the hex digit of a UUID's variant nibble: its top two bits set to 10 (RFC 9562), the other two random
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_event_ids(n: int) -> list[str]:
    """``n`` UUIDv7 strings (RFC 9562) of the current millisecond: 48 bits of Unix milliseconds, then 74
    random bits (time-ordered, unique). One ``os.urandom`` call for all; ``os.urandom``, not ``random``,
    so that a simulator that seeds ``random`` never repeats ids."""
    ms = ((_time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
    rand = _urandom(10 * n)
    ids = []
    for k in range(0, 10 * n, 10):
        h = (ms + rand[k : k + 10]).hex()
        # version 7 replaces the first digit of the third group, the variant the first of the fourth
        ids.append(f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return ids


def new_event_id() -> str:
    """One UUIDv7 string (see :func:`new_event_ids`)."""
    return new_event_ids(1)[0]
