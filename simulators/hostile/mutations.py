"""The grammar of :mod:`simulators.hostile`: how a valid event becomes a hostile one.

Each mutation takes the generator (its ``rng``, ``others``, ``max_bytes`` and ``random_json``) and a
valid event as a dict, and returns the changed dict (written as JSON by :func:`dumps`) or JSON text
already. :class:`Raw` splices into a dict what no Python value writes: ``NaN``, ``1e400``, an integer
past 64 bits, a broken token, a value nested 2,000 deep.

The promise of the generator (its docstring) holds here: a mutation that touches ``seq`` or ``epoch``
makes it invalid, never another valid one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from edgebridge.units import CONVERSIONS

__all__ = ["GAP", "LITERALS", "MUTATIONS", "OBJECT_MUTATIONS", "PROCESSED", "READING", "TEXT_MUTATIONS",
           "Mutation", "Raw", "Source", "dumps", "finish", "padded"]

READING, GAP, PROCESSED = "edgebridge.reading.v1", "edgebridge.gap.v1", "edgebridge.reading.processed.v1"
_REQUIRED = ("specversion", "id", "source", "type", "time", "deviceid", "seq", "data")
_OPTIONAL = ("epoch", "bootid", "monotime", "clocksynced")

# Python values of the wrong type (or range) for any attribute; orjson writes each of them
_WRONG: tuple[Any, ...] = (None, True, False, 0, -1, 1.5, -0.0, 1e308, "", " ", "x", "1.0", [], {}, [1],
                           {"a": 1}, 2**63, 2**64 - 1, -(2**63), "\u0000", "\x01", "\u2028")

# JSON text no Python value writes: non-JSON numbers, numbers past 64 bits, escapes, broken tokens
LITERALS = ("NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", str(2**64), str(2**63),
            str(-(2**63) - 1), "1" * 400, "01", "0x10", "+1", ".5", "1.", "1e", "--1", "tru", "nul",
            '"\\ud800"', '"\\udfff"', '"\\u0000"', '"a\\u0000b"', '"\\x41"', "'single'", "[1,]", "{,}",
            '{"a"}', "[" * 40 + "]" * 40)
_BAD_TIMES = ("", "now", "2024-05-01", "2024-05-01 12:00:00Z", "2024-13-01T12:00:00Z",
              "2024-05-01T25:00:00Z", "2024-05-01T12:00:00", "2024-05-01T12:00:00+0100",
              "2024-02-30T12:00:00Z", "0000-00-00T00:00:00Z", "2024-05-01T12:00:00.1234567890Z",
              "\uff11\uff12\uff13", "2024-05-01T12:00:00Z\u0000")  # fullwidth digits, a NUL
_BAD_SEQS: tuple[Any, ...] = (0, -1, -(2**63), 2**63, 2**64 - 1, 1.0, 1.5, "1", True, False, [], {"seq": 1})
_BAD_EPOCHS: tuple[Any, ...] = ("", "UPPER", "a" * 65, "a/b", "a b", "ép", "a\u0000", "a\n", 5, True, [], {})
_BAD_IDS: tuple[Any, ...] = ("", "x" * 257, "a\u0000b", "a\x01b", "tab\there", "\ud7ff\u2028", 7, [], {})
_BAD_DEVICE_IDS = ("", ".", "..", "a/b", "a+b", "a#b", "a b", "x" * 129, "a\u0000", "a\x7f")
_BAD_TYPES = ("", "edgebridge.reading.v2", "edgebridge.gap.v0", "com.example.evil", "x" * 300, "READING",
              "edgebridge.reading.v1\u0000")
_DEPTHS = (31, 32, 33, 254, 255, 256, 300, 1000, 1020, 1023, 1024, 1025, 2000)
_BAD_UTF8 = (b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80",
             b"\xc3")
_CONVERTED = (*sorted(CONVERSIONS), "lux", "degC", "Cel", "x")  # units the enricher converts, and not


class Raw:
    """JSON text to splice into an object where a value goes (orjson cannot write it)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(obj: Any) -> bytes:
    """``obj`` as JSON, with every :class:`Raw` spliced in as its text."""
    spliced: list[str] = []

    def default(value: Any) -> str:
        if isinstance(value, Raw):
            spliced.append(value.text)
            return f"@@raw{len(spliced) - 1}@@"
        raise TypeError

    out = orjson.dumps(obj, default=default)
    for i, text in enumerate(spliced):
        out = out.replace(f'"@@raw{i}@@"'.encode(), text.encode("utf-8", "surrogatepass"), 1)
    return out


class Source(Protocol):
    """What a mutation uses of the generator (:class:`simulators.hostile.Hostile`)."""

    rng: random.Random
    others: list[str]  # device ids a spoofed event may claim
    max_bytes: int

    def random_json(self, depth: int) -> Any: ...


# --- mutations of one event (a dict in, a dict or JSON text out) ------------------------------------------


def padded(obj: dict[str, Any], size: int) -> bytes:
    """A valid event of exactly ``size`` bytes (a string reading fills it), but for its size."""
    obj["data"] = {"state": {"v": ""}}
    obj["data"]["state"]["v"] = "x" * (size - len(dumps(obj)))
    return dumps(obj)


def finish(value: Any) -> bytes:
    """A mutation's result as JSON text."""
    return value if isinstance(value, bytes) else dumps(value)


def _pick_attr(g: Source, obj: dict[str, Any]) -> str:
    return g.rng.choice([*_REQUIRED, *(a for a in _OPTIONAL if a in obj)])


def _drop(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    obj.pop(_pick_attr(g, obj), None)
    return obj


def _null(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    obj[_pick_attr(g, obj)] = None  # a required one: missing; an optional one: absent (valid)
    return obj


def _retype(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    attr = _pick_attr(g, obj)
    obj[attr] = g.rng.choice(_WRONG)
    if attr == "seq" and type(obj["seq"]) is int and obj["seq"] >= 1:
        obj["seq"] = 0  # a valid seq out of order would break the grammar's promise (module docstring)
    if attr == "epoch" and isinstance(obj["epoch"], str) and obj["epoch"] in ("x",):
        obj["epoch"] = "X"  # "x" would be a valid new epoch: keep epochs few
    return obj


def _literal(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    rng = g.rng
    text = rng.choice(LITERALS)
    if rng.random() < 0.5:
        obj[rng.choice(("seq", "monotime", "id", "time", "epoch", "specversion"))] = Raw(text)
    else:
        obj["data"] = {"temperature": {"v": Raw(text), "u": "Cel"}}
    return obj


_EDGES: tuple[Any, ...] = (2**64 - 1, -(2**63), Raw(str(2**64)), Raw(str(-(2**63) - 1)), 1e308, -1e308,
                           1.7976931348623157e308, 5e-324, -0.0, 0, 1e19, -273.15, Raw("1" * 300),
                           Raw("NaN"), Raw("Infinity"), Raw("-1e400"))


def _numbers(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """Reading values at and past the edges, in units the enricher converts: most valid (2**64-1, 2**64
    read as a double, 1e308, 5e-324, -0.0), so that calibration, conversion and the dew point meet them."""
    rng = g.rng
    data = {"temperature": {"v": rng.choice(_EDGES), "u": rng.choice(("Cel", "degF", "K"))}}
    if rng.random() < 0.6:
        humidity = rng.choice((100, 50, 1e-320, 5e-324, 99.99999999999999, 2**64 - 1))
        data["humidity"] = {"v": humidity, "u": "%RH"}
    if rng.random() < 0.6:
        data["energy"] = {"v": rng.choice(_EDGES), "u": rng.choice(_CONVERTED)}
    obj["data"] = data
    if rng.random() < 0.3:
        obj["monotime"] = rng.choice((-1, 2**63, Raw(str(2**64)), 1.5))
    return obj


def _spoof(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    other = g.rng.choice([d for d in g.others if d != obj["deviceid"]])
    obj["deviceid"] = other
    if g.rng.random() < 0.8:
        obj["source"] = f"/devices/{other}"
    return obj


def _source(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    device = obj["deviceid"]
    obj["source"] = g.rng.choice(("", "/devices/", f"/devices/{device}/x", f"devices/{device}",
                                  f"/devices/{device.upper()}", 7))
    return obj


def _specversion(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    obj["specversion"] = g.rng.choice(("0.3", "1", "1.0 ", "2.0", 1.0, "", "1.0\u0000"))
    return obj


def _time(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    obj["time"] = g.rng.choice(_BAD_TIMES)
    return obj


def _seq(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    rng = g.rng
    obj["seq"] = rng.choice(_BAD_SEQS) if rng.random() < 0.8 else Raw(rng.choice(("1e0", "1.0", str(2**64))))
    return obj


def _type(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    obj["type"] = g.rng.choice(_BAD_TYPES)
    return obj


def _processed_type(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """A device claiming to send an already processed event (free-form data, nested)."""
    obj["type"] = PROCESSED
    obj["data"] = {"readings": obj.get("data"), "flags": ["forged"], "deep": g.random_json(4)}
    return obj


def _epoch(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    obj["epoch"] = g.rng.choice(_BAD_EPOCHS)
    return obj


def _ids(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """Control characters, NUL, emptiness, length in ids; or a bad device id in the envelope."""
    rng = g.rng
    if rng.random() < 0.5:
        obj[rng.choice(("id", "bootid"))] = rng.choice(_BAD_IDS)
    else:
        bad = rng.choice(_BAD_DEVICE_IDS)
        obj["deviceid"], obj["source"] = bad, f"/devices/{bad}"
    return obj


def _strings(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """Strange characters in names, units and string values: NUL refused, other controls allowed in
    free text only."""
    rng = g.rng
    odd = rng.choice(("\u0000", "\x01", "\x1b[31m", "\u2028", "\ufeff", "\U0001f600", "\x7f", "a\u0000b",
                      "\ud7ff"))
    where = rng.random()
    if where < 0.33:
        obj["data"] = {f"t{odd}": {"v": 1, "u": "Cel"}}
    elif where < 0.66:
        obj["data"] = {"temperature": {"v": 1, "u": f"C{odd}"}}
    else:
        obj["data"] = {"state": {"v": f"on{odd}off"}}
    return obj


def _data(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    obj["data"] = g.rng.choice((
        {}, [], "x", 1, None, {"t": 1}, {"t": {}}, {"t": {"u": "Cel"}}, {"t": {"v": 1, "u": "Cel", "x": 1}},
        {"t": {"v": [1]}}, {"t": {"v": {"v": 1}}}, {"t": {"v": None}}, {"": {"v": 1}}, {"x" * 129: {"v": 1}},
        {"t": {"v": 1, "u": ""}}, {"t": {"v": 1, "u": "u" * 33}}, {"t": {"v": 1, "u": 5}},
        {"first": 1, "last": 2, "count": 2, "reason": "evicted"},
    ))
    return obj


def _extensions(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """Other CloudEvents attributes: valid (lowercase name, scalar) and not."""
    rng = g.rng
    name, value = rng.choice((
        ("subject", "pump"), ("vendorx", 5), ("flag", True), ("datacontenttype", "application/json"),  # valid
        ("Upper", "x"), ("with-dash", 1), ("x" * 65, 1), ("", 1), ("nested", {"a": 1}), ("list", [1]),
        ("nul", "a\u0000"), ("big", 2**63), ("float", 1.5), ("datacontenttype", "text/plain"),
        ("data_base64", "AAAA"), ("\u00e9t\u00e9", 1),
    ))
    obj[name] = value
    return obj


def _huge(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """A long string, up to the size limit: valid as a string reading, not as an id or a unit."""
    rng = g.rng
    size = min(int(2 ** rng.uniform(8, 18)), g.max_bytes - 600)
    where = rng.random()
    if where < 0.6:
        obj["data"] = {"state": {"v": rng.choice("xé€") * (size // 3)}}
    elif where < 0.8:
        obj["id"] = "i" * size
    else:
        obj["data"] = {f"m{i}": {"v": i, "u": "V"} for i in range(size // 24)}  # many readings
    return obj


def _deep(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """A value nested ``depth`` levels, at a random position."""
    rng = g.rng
    depth = rng.choice(_DEPTHS)
    opener, closer = rng.choice((("[", "]"), ('{"k":', "}")))
    nested = Raw(opener * depth + "1" + closer * depth)
    where = rng.choice(("seq", "id", "data", "ext", "v", "epoch"))
    if where == "data":
        obj["data"] = nested if rng.random() < 0.5 else {"t": nested}
    elif where == "v":
        obj["data"] = {"t": {"v": nested}}
    elif where == "ext":
        obj["deepext"] = nested
    else:
        obj[where] = nested
    return obj


def _gap(g: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """A gap event with a forged range: reaching its own seq or past it, reversed, miscounted, zero,
    huge; a legal one (everything below its seq) now and then."""
    rng = g.rng
    seq = obj["seq"] if type(obj["seq"]) is int else 2
    first, last = rng.choice((
        (1, seq), (1, seq + 10), (seq, seq), (5, 2), (0, 1), (-3, 1), (1, 2**63 - 1), (2**62, 2**63 - 1),
        (1, Raw(str(2**64))), (1.0, 2), ("1", "2"), (1, max(1, seq - 1)),
    ))
    count: Any = last - first + 1 if type(first) is int and type(last) is int else 1
    if rng.random() < 0.2:
        count = rng.choice((0, -1, 2**63, count + 1 if type(count) is int else 0))
    obj["type"] = GAP
    reason = rng.choice(("evicted", "", "x" * 65, "a\u0000", 5))
    obj["data"] = {"first": first, "last": last, "count": count, "reason": reason}
    if rng.random() < 0.1:
        obj["data"]["extra"] = 1
    return obj


# --- mutations of the JSON text ----------------------------------------------------------------------------


def _text_dup_key(g: Source, text: bytes) -> bytes:
    """The same key twice in one object: a spoofing attempt (``deviceid`` of another device first)."""
    rng = g.rng
    key = rng.choice((b"deviceid", b"seq", b"data", b"type", b"id", b"epoch", b"v"))
    if key == b"v":
        return text.replace(b'{"v":', b'{"v":0,"v":', 1)
    value = {b"deviceid": b'"victim-1"', b"seq": b"1", b"data": b"{}", b"type": b'"x"', b"id": b'"dup"',
             b"epoch": b'"e"'}[key]
    start = text.find(b"{")
    if start < 0:
        return text
    return text[:start + 1] + b'"' + key + b'":' + value + b"," + text[start + 1:]


def _text_utf8(g: Source, text: bytes) -> bytes:
    """Invalid UTF-8 inside a string."""
    rng = g.rng
    quotes = [i for i in range(len(text)) if text[i] == 0x22][:200]
    at = rng.choice(quotes) + 1 if quotes else 0
    return text[:at] + rng.choice(_BAD_UTF8) + text[at:]


def _text_truncate(g: Source, text: bytes) -> bytes:
    return text[: g.rng.randrange(len(text))] if text else text


def _text_flip(g: Source, text: bytes) -> bytes:
    """A few random bit flips, kept off the values of ``seq`` and ``epoch``: a flip there could make up
    a valid seq below the device's top or a new epoch (see the module docstring)."""
    if not text:
        return text
    out = bytearray(text)
    rng = g.rng
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(out))
        if _near_seq_or_epoch(text, i):
            continue
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _near_seq_or_epoch(text: bytes, i: int) -> bool:
    for key in (b'"seq":', b'"epoch":'):
        at = text.rfind(key, max(0, i - 40), i + len(key))  # a key starting at or before i
        if at >= 0 and i < at + len(key) + 24:  # the key itself or its value (16 hex digits, 19 digits)
            return True
    return False


def _text_wrap(g: Source, text: bytes) -> bytes:
    """Around the JSON: a BOM, trailing garbage, a second document, whitespace (valid), a NUL byte."""
    return g.rng.choice((b"\xef\xbb\xbf" + text, text + b"x", text + text, b" \n\t" + text + b"\r\n",
                         text + b"\x00", b"\x00" + text, text[:-1] + b",}"))


def _text_escape(g: Source, text: bytes) -> bytes:
    """Escapes in strings: lone surrogates (not JSON), an escaped NUL, an escaped colon (valid)."""
    escape = g.rng.choice((b"\\ud800", b"\\udc00", b"\\u0000", b"\\u003a", b"\\/", b"\\x41", b"\\"))
    at = text.find(b'"id":"')
    if at < 0:
        return text + escape
    at += 6
    return text[:at] + escape + text[at:]


Mutation = Callable[[Source, dict[str, Any]], Any]
OBJECT_MUTATIONS: list[tuple[str, Mutation]] = [
    ("drop", _drop), ("null", _null), ("retype", _retype), ("literal", _literal), ("numbers", _numbers),
    ("spoof", _spoof), ("source", _source), ("specversion", _specversion), ("time", _time), ("seq", _seq),
    ("type", _type), ("processed_type", _processed_type), ("epoch", _epoch), ("ids", _ids),
    ("strings", _strings), ("data", _data), ("extensions", _extensions), ("huge", _huge), ("deep", _deep),
    ("gap", _gap),
]
TEXT_MUTATIONS: list[tuple[str, Callable[[Source, bytes], bytes]]] = [
    ("text_dup_key", _text_dup_key), ("text_utf8", _text_utf8), ("text_truncate", _text_truncate),
    ("text_flip", _text_flip), ("text_wrap", _text_wrap), ("text_escape", _text_escape),
]


def _text(name: str, mutate: Callable[[Source, bytes], bytes]) -> tuple[str, Mutation]:
    return name, lambda g, obj: mutate(g, dumps(obj))


#: Every mutation of one event, by name: object mutations return the changed dict, text mutations the
#: JSON text. ``huge`` is listed once; the others weigh the same.
MUTATIONS: list[tuple[str, Mutation]] = OBJECT_MUTATIONS + [_text(n, m) for n, m in TEXT_MUTATIONS]
