"""Duplicate keys in a JSON payload: refused, because orjson silently keeps the last one.

Private to :mod:`edgebridge.envelope`. ``{"deviceid": "a", ..., "deviceid": "b"}`` reads as device ``b``
here and may read as ``a`` in another consumer's parser; the bridge forwards a single event's bytes
verbatim, so the decoder must refuse what it cannot read unambiguously.

orjson keeps no trace of a duplicate, so the raw text has to tell. Two tiers, like the validators':

- :func:`surely_unique`, the pre-check, one ``bytes.count`` and one ``memchr``: every key of the text
  is followed by one colon, and so is every colon inside a string. The decoder counts the keys of what
  it accepted (it walks them anyway) plus the colons it knows of in their strings (the two of each
  ``time``); the payload's colons can only be more. Equal, and with no backslash in the payload (an
  escape such as ``\\u003a`` is a colon in a string that the text does not show), there is no room
  left for a duplicate: a duplicated key brings its own colon. Anything else (a duplicate, or merely a
  colon in an id, a unit, a string value, a time offset, an escape) goes to the exact check.
- :func:`duplicate_keys`, exact: the standard library's C parser with a hook that compares each
  object's pairs with the dict they make (~4 us per event, where orjson and the checks take ~4). Only
  when it finds a duplicate (or the text nests deeper than its recursion allows) does a pure-Python
  scan of the string and structure tokens say which top-level items hold one; that scan is iterative,
  so any nesting orjson accepted (1,024 levels) is fine, and slow (~17 us per event): hostile input only.
"""

from __future__ import annotations

import json
import re

__all__ = ["duplicate_keys", "surely_unique"]


class _Duplicate(Exception):
    """Raised out of the standard parser at the first object with a duplicate key."""


def _refuse_duplicate(pairs: list[tuple[str, object]]) -> None:
    if len(dict(pairs)) != len(pairs):
        raise _Duplicate
    # None: the parsed values are of no use here, so they are not built


_strict = json.JSONDecoder(object_pairs_hook=_refuse_duplicate)

# A JSON string (escapes included), or one structural character; numbers, literals and whitespace
# between them are skipped by the search itself. Only run on text orjson has already accepted.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],]')


def surely_unique(payload: bytes | bytearray | memoryview | str, accounted: int) -> bool:
    """True when ``payload`` cannot hold a duplicate key, given ``accounted``: the keys of everything
    the decoder kept plus a lower bound of the colons inside its strings. False means "look closer"."""
    if isinstance(payload, str):
        return payload.count(":") == accounted and "\\" not in payload
    if isinstance(payload, memoryview):
        payload = payload.tobytes()
    return payload.count(b":") == accounted and 0x5C not in payload  # 0x5C: a backslash


def duplicate_keys(payload: bytes | bytearray | memoryview | str) -> dict[int | None, str]:
    """The first duplicated key of each top-level item that has one: ``{None: key}`` when the payload
    is one object, ``{index: key}`` per item of a top-level array. ``payload`` must be valid JSON."""
    text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8")
    try:
        _strict.decode(text)
        return {}
    except _Duplicate:
        pass
    except (RecursionError, ValueError):  # deeper than the C parser recurses: the scan below decides
        pass
    return _locate(text)


def _locate(text: str) -> dict[int | None, str]:
    """:func:`duplicate_keys` by a token scan: iterative, whatever the nesting."""
    found: dict[int | None, str] = {}
    stack: list[set[str] | None] = []  # the keys of each open object; None for an open array
    expect_key = False
    item: int | None = None
    for match in _TOKENS.finditer(text):
        token = match.group()
        first = token[0]
        if first == '"':
            if expect_key:
                key = token[1:-1] if "\\" not in token else json.loads(token)
                keys = stack[-1]
                assert keys is not None
                if key in keys:
                    found.setdefault(item, key)
                else:
                    keys.add(key)
                expect_key = False
        elif first == "{":
            stack.append(set())
            expect_key = True
        elif first == "[":
            if not stack:
                item = 0
            stack.append(None)
            expect_key = False
        elif first == ",":
            top = stack[-1]
            expect_key = top is not None
            if top is None and len(stack) == 1:
                item = (item or 0) + 1
        else:  # "}" or "]"
            stack.pop()
            expect_key = False
    return found
