"""Hostile input to the envelope decoder: each class of attack has its reason, nothing else escapes.

The classes of the module docstring of :mod:`edgebridge.envelope`: nesting, sizes, numbers, bytes,
duplicate keys, NUL and control characters. Then Hypothesis: nesting up to 1,024 levels (orjson's
limit) at any position of a valid event, payloads up to the 256 KiB message limit.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebridge import _decode, _duplicates
from edgebridge import envelope as ev
from edgebridge._validate import MAX_DATA_DEPTH, show
from edgebridge.envelope import DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS, PROCESSED_TYPE, REASONS, Event
from edgebridge.errors import EnvelopeError
from tests.test_envelope import DECODERS, events, reason_of, wire

SINGLE_DECODERS = [ev.decode, ev.decode_message, ev.decode_message_partial]  # what takes one event
FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
BIG = settings(deadline=None, database=None, max_examples=40,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def only_envelope_errors(payload: bytes | str) -> list[object]:
    """Every decoder's outcome: a value, or the reason of the EnvelopeError it raised (nothing else)."""
    outcomes: list[object] = []
    for decoder in DECODERS:
        try:
            outcomes.append(decoder(payload))
        except EnvelopeError as exc:
            assert exc.reason in REASONS
            outcomes.append(exc.reason)
    return outcomes


def nested(depth: int, leaf: str = "1", opener: str = "[") -> str:
    """JSON text of ``depth`` nested arrays (or objects with key "k") around ``leaf``."""
    if opener == "[":
        return "[" * depth + leaf + "]" * depth
    return '{"k":' * depth + leaf + "}" * depth


def with_value(path: tuple[str, ...], text: str, base: dict[str, Any] | None = None) -> bytes:
    """A valid event's JSON with the value at ``path`` replaced by the raw JSON ``text``."""
    obj = base if base is not None else wire(bootid="b", ext="x")
    marker = "@@value@@"
    target = obj = orjson.loads(orjson.dumps(obj))
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = marker
    return orjson.dumps(obj).replace(f'"{marker}"'.encode(), text.encode())


# --- nesting -------------------------------------------------------------------------------------------

POSITIONS = [("seq",), ("id",), ("source",), ("time",), ("deviceid",), ("bootid",), ("ext",), ("data",),
             ("data", "t"), ("data", "t", "v"), ("data", "t", "u"), ("epoch",), ("data_base64",)]


@pytest.mark.parametrize("path", POSITIONS, ids=".".join)
@pytest.mark.parametrize("depth", [300, 999, 1024])
@pytest.mark.parametrize("opener", ["[", "{"])
def test_deep_values_anywhere_give_a_reason(path: tuple[str, ...], depth: int, opener: str) -> None:
    """The issue's crash: a value nested hundreds of levels deep reached repr() in an error detail."""
    payload = with_value(path, nested(depth, opener=opener))
    outcomes = only_envelope_errors(payload)
    assert all(isinstance(o, str) for o in outcomes)  # refused by every decoder, with a reason
    # in a batch (4 levels more at most: the array, the event, data, a measurement)
    item = with_value(path, nested(depth - 4, opener=opener))
    good, bad = ev.decode_message_partial(b"[" + orjson.dumps(wire(seq=1)) + b"," + item + b"]")
    assert [e.seq for e in good] == [1] and [r.index for r in bad] == [1]


def test_past_orjsons_limit_the_whole_payload_is_too_deep() -> None:
    assert reason_of(lambda: ev.decode(nested(1025).encode())) == ("too_deep", None)
    assert reason_of(lambda: ev.decode_message_partial(f"[{nested(1025)}]".encode())) == ("too_deep", None)
    assert reason_of(lambda: ev.decode(nested(1024).encode())) == ("not_object", None)


def test_free_form_data_nests_at_most_max_data_depth() -> None:
    def processed(depth: int) -> bytes:
        # data is level 1, so "x" holds depth - 1 more levels
        return with_value(("data",), '{"x":' + nested(depth - 1) + "}", wire(type=PROCESSED_TYPE))

    accepted = ev.decode(processed(MAX_DATA_DEPTH))
    assert ev.decode(ev.encode(accepted)) == accepted  # whatever is accepted encodes again
    for depth in (MAX_DATA_DEPTH + 1, 254, 256, 1000):
        assert reason_of(lambda d=depth: ev.decode(processed(d))) == ("too_deep", None)  # type: ignore[misc]
    deep_object = with_value(("data",), nested(MAX_DATA_DEPTH + 1, opener="{"), wire(type=PROCESSED_TYPE))
    assert reason_of(lambda: ev.decode(deep_object)) == ("too_deep", None)


def test_free_form_depth_is_checked_without_recursion_even_from_python() -> None:
    value: Any = 1
    for _ in range(100_000):  # far past Python's recursion limit
        value = [value]
    obj = wire(type=PROCESSED_TYPE, data={"x": value})
    assert reason_of(lambda: ev.from_dict(obj)) == ("too_deep", None)


def test_error_details_are_bounded_whatever_the_value() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert len(show(deep)) <= 80
    assert len(show(10**5000)) <= 80  # str() of an int past 4,300 digits raises ValueError
    assert reason_of(lambda: ev.from_dict(wire(seq=10**5000))) == ("bad_seq", None)
    assert reason_of(lambda: ev.from_dict(wire(data={"t": {"v": -(10**5000)}}))) == ("bad_data", None)

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert show(Hostile()).startswith("<Hostile")
    assert reason_of(lambda: ev.from_dict(wire(seq=Hostile()))) == ("bad_seq", None)


# --- sizes --------------------------------------------------------------------------------------------


def test_payload_size_limit_is_the_message_limit_inclusive() -> None:
    filler = "x" * (DEFAULT_MAX_BYTES - len(orjson.dumps(wire(data={"t": {"v": ""}}))))
    at_limit = orjson.dumps(wire(data={"t": {"v": filler}}))
    assert len(at_limit) == DEFAULT_MAX_BYTES
    assert ev.decode(at_limit).data["t"]["v"] == filler
    over = orjson.dumps(wire(data={"t": {"v": filler + "x"}}))
    for decoder in DECODERS:
        assert reason_of(lambda d=decoder: d(over))[0] == "oversized"  # type: ignore[misc]


def test_a_batch_of_too_many_items_is_refused_whole() -> None:
    """Else one 256 KiB message of 50,000 ``{}`` would become 50,000 dead letters."""
    many = b"[" + b",".join([b"{}"] * (DEFAULT_MAX_ITEMS + 1)) + b"]"
    for decoder in (ev.decode_batch, ev.decode_message, ev.decode_message_partial):
        assert reason_of(lambda d=decoder: d(many)) == ("oversized", None)  # type: ignore[misc]
    at_limit = b"[" + b",".join([b"{}"] * DEFAULT_MAX_ITEMS) + b"]"
    good, bad = ev.decode_message_partial(at_limit)
    assert (good, len(bad)) == ([], DEFAULT_MAX_ITEMS)


# --- numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400",
                                     "1" * 400, "0x10", "01", "+1", ".5", "1.", "1e", "--1"])
def test_non_json_numbers_are_not_json(literal: str) -> None:
    for path in (("seq",), ("data", "t", "v")):
        assert reason_of(lambda p=path: ev.decode(with_value(p, literal))) == ("not_json", None)  # type: ignore[misc]


def test_integers_past_64_bits_are_read_as_doubles() -> None:
    """orjson reads them as the nearest double: refused where an integer is required, a number in a
    reading (the documented rule; -2**63..2**64-1 stay exact integers)."""
    for literal in (str(2**64), str(-(2**63) - 1), "1" + "0" * 300):
        for path, reason in ((("seq",), "bad_seq"), (("monotime",), "bad_attribute"),
                             (("ext",), "bad_attribute")):
            assert reason_of(lambda p=path, t=literal: ev.decode(with_value(p, t)))[0] == reason  # type: ignore[misc]
        value = ev.decode(with_value(("data", "t", "v"), literal)).data["t"]["v"]
        assert type(value) is float and value == float(literal)
    assert ev.decode(with_value(("data", "t", "v"), str(2**64 - 1))).data["t"]["v"] == 2**64 - 1
    assert ev.decode(with_value(("data", "t", "v"), str(-(2**63)))).data["t"]["v"] == -(2**63)
    assert reason_of(lambda: ev.decode(with_value(("seq",), str(2**63)))) == ("bad_seq", None)


def test_negative_zero_is_a_number_and_survives_a_round_trip() -> None:
    event = ev.decode(with_value(("data", "t", "v"), "-0.0"))
    assert math.copysign(1.0, event.data["t"]["v"]) == -1.0
    assert math.copysign(1.0, ev.decode(ev.encode(event)).data["t"]["v"]) == -1.0
    assert reason_of(lambda: ev.decode(with_value(("seq",), "-0.0"))) == ("bad_seq", None)
    assert reason_of(lambda: ev.decode(with_value(("seq",), "-0"))) == ("bad_seq", None)


# --- bytes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80",  # invalid UTF-8
])
def test_invalid_utf8_anywhere_is_not_json(raw: bytes) -> None:
    for path in (("id",), ("data", "t", "u"), ("data", "t", "v")):
        payload = with_value(path, '"a@b"').replace(b"@", raw)
        assert reason_of(lambda p=payload: ev.decode(p)) == ("not_json", None)  # type: ignore[misc]
    assert reason_of(lambda: ev.decode(b"\xef\xbb\xbf" + orjson.dumps(wire()))) == ("not_json", None)  # BOM


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud800\\u0041"])
def test_lone_surrogate_escapes_are_not_json(escape: str) -> None:
    assert reason_of(lambda: ev.decode(with_value(("data", "t", "v"), f'"{escape}"'))) == ("not_json", None)


def test_a_str_payload_with_a_lone_surrogate_is_not_json() -> None:
    text = orjson.dumps(wire()).decode().replace("e-1", "e-\ud800")
    assert reason_of(lambda: ev.decode(text)) == ("not_json", None)


# --- NUL and control characters -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "reason"), [
    (("data", "t", "v"), "bad_data"),  # free text: only NUL refused
    (("ext",), "bad_attribute"),
    (("data", "t", "u"), "bad_data"),  # names, units, ids: printable only
    (("id",), "bad_attribute"),
    (("bootid",), "bad_attribute"),
])
@pytest.mark.parametrize("text", ["\\u0000", "a\\u0000b", "\\u0000\\u0000"])
def test_nul_is_refused_in_every_string(path: tuple[str, ...], reason: str, text: str) -> None:
    assert reason_of(lambda: ev.decode(with_value(path, f'"{text}"'))) == (reason, None)


def test_nul_in_a_measurement_name_and_in_free_form_data() -> None:
    assert reason_of(lambda: ev.decode(with_value(("data",), '{"a\\u0000":{"v":1}}'))) == ("bad_data", None)
    for data in ['{"x":"a\\u0000"}', '{"x":{"y":["\\u0000"]}}', '{"a\\u0000":1}']:
        payload = with_value(("data",), data, wire(type=PROCESSED_TYPE))
        assert reason_of(lambda p=payload: ev.decode(p)) == ("bad_data", None)  # type: ignore[misc]


@pytest.mark.parametrize("char", ["\\u0001", "\\u001f", "\\u007f", "\\u2028", "\\t", "\\n"])
def test_control_characters_are_free_text_but_never_names(char: str) -> None:
    """The documented rule: free text may hold any character but NUL; names, ids, units may not."""
    reading = ev.decode(with_value(("data", "t", "v"), f'"a{char}b"'))
    assert reading.data["t"]["v"] == json.loads(f'"a{char}b"')
    assert ev.decode(with_value(("ext",), f'"a{char}"')).extensions["ext"] == json.loads(f'"a{char}"')
    assert reason_of(lambda: ev.decode(with_value(("data", "t", "u"), f'"C{char}"'))) == ("bad_data", None)
    assert reason_of(lambda: ev.decode(with_value(("id",), f'"e{char}"'))) == ("bad_attribute", None)


def test_raw_control_characters_are_not_json() -> None:
    assert reason_of(lambda: ev.decode(with_value(("data", "t", "v"), '"a\x00b"'))) == ("not_json", None)
    assert reason_of(lambda: ev.decode(with_value(("data", "t", "v"), '"a\x01b"'))) == ("not_json", None)


# --- duplicate keys -------------------------------------------------------------------------------------


def agent_payload() -> bytes:
    return orjson.dumps(wire(bootid="b1", monotime=5, clocksynced=True, epoch="0f3a"))


DUPLICATES = [
    (b'"seq":42', b'"seq":1,"seq":42'),
    (b'"seq":42', b'"seq":42,"seq":42'),  # same value twice: still two keys
    (b'"deviceid":"pump-7"', b'"deviceid":"pump-8","deviceid":"pump-7"'),
    (b'"data":', b'"data":{"t":{"v":1}},"data":'),
    (b'"u":"Cel"', b'"u":"Cel","u":"Cel"'),
    (b'"v":21.5', b'"v":99,"v":21.5'),
    (b'"door":', b'"temperature":{"v":0},"door":'),  # a measurement name twice
    (b'"seq":42', b'"\\u0073eq":1,"seq":42'),  # the same key, spelled with an escape
    (b'"seq":42', b'"seq":42,"x":[{"a":1}],"x":2'),  # the dropped value holds keys of its own
    (b'"seq":42', b'"seq":[[[[[[{"a":1,"a":2}]]]]]],"seq":42'),  # a duplicate inside a dropped value
]


@pytest.mark.parametrize(("old", "new"), DUPLICATES)
def test_duplicate_keys_are_refused(old: bytes, new: bytes) -> None:
    payload = agent_payload().replace(old, new, 1)
    assert payload != agent_payload()
    for decoder in SINGLE_DECODERS:
        assert reason_of(lambda d=decoder: d(payload)) == ("duplicate_key", None)  # type: ignore[misc]
    batch = b"[" + agent_payload() + b"," + payload + b"]"
    assert reason_of(lambda: ev.decode_batch(batch)) == ("duplicate_key", 1)
    assert reason_of(lambda: ev.decode_message(batch)) == ("duplicate_key", 1)
    good, bad = ev.decode_message_partial(batch)
    assert len(good) == 1 and [(r.index, r.error.reason) for r in bad] == [(1, "duplicate_key")]
    assert bad[0].payload == batch  # the whole message: a re-encoded item would hide the duplicate


def test_escaped_colons_cannot_hide_a_duplicate_from_the_pre_check() -> None:
    """The colon count alone would balance: two colons of ``time`` escaped, two duplicates added."""
    payload = agent_payload().replace(b"12:00:00", b"12\\u003a00\\u003a00").replace(
        b'"seq":42', b'"seq":1,"seq":2,"seq":42')
    assert payload.count(b":") == agent_payload().count(b":")
    assert reason_of(lambda: ev.decode(payload)) == ("duplicate_key", None)


def test_a_duplicate_deeper_than_the_standard_parser_recurses_is_found() -> None:
    """The exact check's C parser stops at Python's recursion limit; the token scan takes over."""
    deep = '{"a":1,"a":2}'
    for _ in range(1015):
        deep = "[" + deep + "]"
    payload = agent_payload().replace(b'"seq":42', b'"seq":' + deep.encode() + b',"seq":42')
    assert reason_of(lambda: ev.decode(payload)) == ("duplicate_key", None)
    assert _duplicates.duplicate_keys(payload) == {None: "a"}  # the first one in the text


json_texts = st.recursive(
    st.sampled_from(["1", '"s"', "null", '"a:b"', '"\\u0061"']),
    lambda inner: st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]")
    | st.lists(st.tuples(st.sampled_from(['"a"', '"b"', '"\\u0061"', '"a\\"b"']), inner), max_size=4).map(
        lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"),
    max_leaves=20,
)


@FAST
@given(st.lists(json_texts, min_size=1, max_size=4))
def test_the_parser_check_and_the_token_scan_agree(items: list[str]) -> None:
    text = "[" + ",".join(items) + "]"
    located = _duplicates._locate(text)
    expected: dict[int | None, str] = {}
    for i, item in enumerate(items):
        try:
            json.loads(item, object_pairs_hook=_duplicates._refuse_duplicate)
        except _duplicates._Duplicate:
            expected[i] = located.get(i, "?")
    assert located == expected
    assert _duplicates.duplicate_keys(text) == expected


def test_duplicate_in_processed_free_form_data() -> None:
    payload = with_value(("data",), '{"site":"a","n":{"x":1,"x":2}}', wire(type=PROCESSED_TYPE))
    assert reason_of(lambda: ev.decode(payload)) == ("duplicate_key", None)


def test_a_duplicate_in_an_item_refused_anyway_keeps_its_first_reason() -> None:
    bad_item = orjson.dumps(wire(seq=0)).replace(b'"seq":0', b'"seq":0,"seq":0')
    good, bad = ev.decode_message_partial(b"[" + agent_payload() + b"," + bad_item + b"]")
    assert len(good) == 1 and [(r.index, r.error.reason) for r in bad] == [(1, "bad_seq")]


@pytest.mark.parametrize("payload", [
    json.dumps(wire(), indent=2).encode(),  # whitespace
    json.dumps(wire(), ensure_ascii=True).replace("pump", "p\\u00fcmp").encode(),  # escapes
    orjson.dumps(wire(deviceid="urn:dev:7", source="/devices/urn:dev:7")),  # colons in strings
    orjson.dumps(wire(time="2024-05-01T12:00:00+02:00", data={"t": {"v": "12:30", "u": "h:m"}})),
    orjson.dumps(wire(type=PROCESSED_TYPE, data={"a": {"b": [{"c": "x:y"}]}, "b": None})),
])
def test_valid_payloads_off_the_fast_pre_check_are_accepted(payload: bytes) -> None:
    event = ev.decode(payload, known_types=None)
    assert ev.decode_message(b"[" + payload + b"," + payload + b"]", known_types=None) == [event, event]


def test_the_agents_payloads_never_take_the_exact_duplicate_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Otherwise duplicate checking would stay correct but cost tens of microseconds per event."""
    def scan(payload: object) -> dict[int | None, str]:
        raise AssertionError("exact duplicate scan on an agent's payload")

    monkeypatch.setattr(_decode, "duplicate_keys", scan)  # where the decoders look it up
    single = agent_payload()
    gap = orjson.dumps(ev.to_dict(ev.new_gap("pump-7", 50, 3, 9, "evicted", epoch="0f3a")))
    for decoder in SINGLE_DECODERS:
        decoder(single)
        decoder(gap)
    for decoder in (ev.decode_batch, ev.decode_message, ev.decode_message_partial):
        decoder(b"[" + single + b"," + gap + b"]")
    ev.decode(orjson.dumps(wire(type=PROCESSED_TYPE, data={"readings": {"t": {"v": 1}}, "at": "12:00"})))


@st.composite
def with_duplicate(draw: st.DrawFn) -> tuple[bytes, Event]:
    """A valid event's JSON with one of its keys, at any level, given a second time (any value)."""
    event = draw(events())
    obj = orjson.loads(ev.encode(event))
    containers: list[dict[str, Any]] = [obj]
    if isinstance(obj["data"], dict):
        containers.append(obj["data"])
        containers += [m for m in obj["data"].values() if isinstance(m, dict)]
    target = draw(st.sampled_from([c for c in containers if c]))
    key = draw(st.sampled_from(sorted(target)))
    marker = "@dup@"
    target[marker] = draw(st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5))
    text = orjson.dumps(obj)
    spelled = draw(st.sampled_from([orjson.dumps(key), json.dumps(key, ensure_ascii=True).encode()]))
    return text.replace(orjson.dumps(marker), spelled), event


@FAST
@given(with_duplicate())
def test_any_duplicated_key_at_any_level_is_refused(case: tuple[bytes, Event]) -> None:
    payload, _ = case
    for decoder in SINGLE_DECODERS:
        try:
            decoder(payload, known_types=None)  # type: ignore[operator]
        except EnvelopeError as exc:
            assert exc.reason in REASONS
            # either the schema already refuses the last-wins reading, or the duplicate is found
            continue
        raise AssertionError(f"{decoder.__name__} accepted a duplicate key: {payload[:200]!r}")


@FAST
@given(events(), st.sampled_from([None, 1, 2]), st.booleans())
def test_no_false_duplicates_whatever_the_formatting(event: Event, indent: int | None, ascii_: bool) -> None:
    payload = json.dumps(ev.to_dict(event), indent=indent, ensure_ascii=ascii_).encode()
    assert ev.decode(payload, known_types=None) == event
    assert _duplicates.duplicate_keys(payload) == {}


# --- Hypothesis: deep and large -------------------------------------------------------------------------


@FAST
@given(st.sampled_from(POSITIONS), st.integers(1, 1024), st.sampled_from(["[", "{"]),
       st.sampled_from(["1", '"x"', "null", "[]", "{}"]))
def test_any_nesting_up_to_orjsons_limit_at_any_position(
    path: tuple[str, ...], depth: int, opener: str, leaf: str
) -> None:
    payload = with_value(path, nested(depth, leaf, opener))
    for outcome in only_envelope_errors(payload):
        if isinstance(outcome, str):
            continue
        # accepted (a shallow value where the schema allows one): it must encode again
        accepted = outcome[0] if isinstance(outcome, tuple) else outcome
        for event in accepted if isinstance(accepted, list) else [accepted]:
            assert isinstance(event, Event)
            ev.encode(event)


@BIG
@given(st.integers(0, 2**32),  # a seed: Hypothesis drawing 256 KiB itself takes seconds per example
       st.integers(1, DEFAULT_MAX_BYTES + 1024)
       | st.integers(DEFAULT_MAX_BYTES - 4096, DEFAULT_MAX_BYTES + 1))  # near the limit, not only small
def test_random_bytes_up_to_the_message_limit(seed: int, size: int) -> None:
    only_envelope_errors(random.Random(seed).randbytes(size))


def _mutate_text(rnd: random.Random, text: bytes) -> bytes:
    """One byte-level edit of valid JSON: a byte flipped, a slice repeated or cut, a bracket inserted."""
    pos = rnd.randrange(len(text))
    kind = rnd.randrange(4)
    if kind == 0:
        return text[:pos] + bytes([rnd.randrange(256)]) + text[pos + 1:]
    if kind == 1:
        end = min(len(text), pos + rnd.randrange(1, 64))
        return text[:end] + text[pos:end] * rnd.randrange(1, 50) + text[end:]
    if kind == 2:
        return text[:pos] + text[pos + rnd.randrange(1, 32):]
    brackets = rnd.choice([b"[", b"{", b'{"a":', b"]", b"}", b",", b":"]) * rnd.randrange(1, 1100)
    return text[:pos] + brackets + text[pos:]


@BIG
@given(st.lists(events(), min_size=1, max_size=3), st.randoms(use_true_random=False),
       st.integers(1, DEFAULT_MAX_BYTES // 300)
       | st.integers(DEFAULT_MAX_BYTES // 600, DEFAULT_MAX_BYTES // 300),  # near the limit, not only small
       st.integers(0, 3))
def test_large_mutated_batches_up_to_the_message_limit(
    sample: list[Event], rnd: random.Random, count: int, edits: int
) -> None:
    """Batches of valid events grown towards 256 KiB, then byte-level edits: only reasons come out,
    and an untouched batch decodes to its events."""
    batch = [sample[i % len(sample)] for i in range(count)]
    payload = ev.encode_batch(batch)
    if len(payload) > DEFAULT_MAX_BYTES:
        payload = payload[:DEFAULT_MAX_BYTES]
    elif not edits:
        assert ev.decode_message(payload, known_types=None) == batch
    for _ in range(edits):
        payload = _mutate_text(rnd, payload)
    only_envelope_errors(payload)


def test_every_decoder_refuses_with_a_reason_never_another_exception() -> None:
    """The table above, once more from the outside: every hostile case of this file's classes."""
    cases: list[Callable[[], object]] = [
        lambda: nested(1025).encode(),
        lambda: with_value(("seq",), nested(1000)),
        lambda: with_value(("data", "t", "v"), '"\\u0000"'),
        lambda: agent_payload().replace(b'"seq":42', b'"seq":1,"seq":42'),
        lambda: with_value(("seq",), "1e400"),
        lambda: b"[" + b",".join([b"{}"] * (DEFAULT_MAX_ITEMS + 1)) + b"]",
    ]
    for make in cases:
        payload = make()
        assert isinstance(payload, bytes)
        assert all(isinstance(o, str) for o in only_envelope_errors(payload))
