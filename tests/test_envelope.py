"""The wire contract: CloudEvents structured mode and batches, strict and total decoding."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebridge import _validate as v
from edgebridge import envelope as ev
from edgebridge._validate_fast import fast_attributes, is_common_time
from edgebridge.envelope import GAP_TYPE, PROCESSED_TYPE, READING_TYPE, REASONS, Event
from edgebridge.errors import EnvelopeError

FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TIME = "2024-05-01T12:00:00.123Z"


def wire(**changes: Any) -> dict[str, Any]:
    """A valid reading as a JSON object; a change to ``...`` deletes the attribute."""
    obj: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/devices/pump-7",
        "type": READING_TYPE,
        "time": TIME,
        "deviceid": "pump-7",
        "seq": 42,
        "data": {"temperature": {"v": 21.5, "u": "Cel"}, "door": {"v": False}},
    }
    for name, value in changes.items():
        if value is ...:
            del obj[name]
        else:
            obj[name] = value
    return obj


def gap_wire(**data: Any) -> dict[str, Any]:
    body = {"first": 3, "last": 9, "count": 7, "reason": "evicted"} | data
    return wire(type=GAP_TYPE, seq=50, data={k: v for k, v in body.items() if v is not ...})


def reason_of(call: Callable[[], object]) -> tuple[str, int | None]:
    with pytest.raises(EnvelopeError) as info:
        call()
    assert info.value.reason in REASONS
    return info.value.reason, info.value.index


# --- strategies ----------------------------------------------------------------------------------

device_ids = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"], exclude_characters="/+#"),
    min_size=1,
    max_size=40,
).filter(lambda s: s not in (".", ".."))
free_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20)  # no NUL
printable = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), max_size=30).filter(
    lambda s: s.isprintable()
)
names = printable.filter(bool)
units = st.sampled_from(["Cel", "%RH", "Pa", "lx", "V", "degF", "m/s", "count", "/"])
values = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.booleans()
    | free_text
)
measurements = st.builds(
    lambda v, u: {"v": v} if u is None else {"v": v, "u": u},
    values,
    st.none() | units,
)
readings = st.dictionaries(names, measurements, min_size=1, max_size=6)
seqs = st.integers(min_value=1, max_value=2**63 - 1)
times = st.sampled_from(
    [TIME, "2024-02-29T23:59:60Z", "1999-12-31t00:00:00z", "2030-01-01T00:00:00.123456789+05:30"]
)
ext_values = free_text | st.integers(-(2**63), 2**63 - 1) | st.booleans()
extensions = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12).filter(
        lambda n: n not in ev._NOT_EXTENSIONS
    ),
    ext_values,
    max_size=3,
)


@st.composite
def events(draw: st.DrawFn, kinds: tuple[str, ...] = (READING_TYPE, GAP_TYPE, PROCESSED_TYPE)) -> Event:
    kind = draw(st.sampled_from(kinds))
    seq = draw(seqs if kind != GAP_TYPE else st.integers(2, 2**63 - 1))
    if kind == GAP_TYPE:
        last = draw(st.integers(1, seq - 1))
        first = draw(st.integers(1, last))
        data: dict[str, Any] = {"first": first, "last": last, "count": last - first + 1, "reason": "evicted"}
    elif kind == READING_TYPE:
        data = draw(readings)
    else:
        data = {
            "site": draw(printable),
            "readings": draw(readings),
            "flags": draw(st.lists(names, max_size=3)),
        }
    return Event(
        id=draw(names),
        deviceid=draw(device_ids),
        seq=seq,
        type=kind,
        time=draw(times),
        data=data,
        bootid=draw(st.none() | names),
        monotime=draw(st.none() | st.integers(0, 2**63 - 1)),
        clocksynced=draw(st.none() | st.booleans()),
        extensions=draw(extensions),
        epoch=draw(st.none() | st.text("abcdef0123456789-", min_size=1, max_size=64)),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
).filter(lambda value: not (isinstance(value, float) and math.isinf(value)))


# --- building and round trips --------------------------------------------------------------------


def test_new_reading_fills_id_and_time_and_round_trips() -> None:
    event = ev.new_reading(
        "pump-7", 1, {"t": {"v": 21.5, "u": "Cel"}}, bootid="b", monotime=5, clocksynced=False
    )
    assert uuid.UUID(event.id).version == 7
    assert event.time.endswith("Z") and len(event.time) == 24
    ev.parse_time(event.time)
    assert event.source == "/devices/pump-7"
    assert ev.decode(ev.encode(event)) == event


def test_wire_format_is_structured_cloudevents() -> None:
    event = ev.new_reading("pump-7", 42, {"t": {"v": 1}}, time=TIME, event_id="e-1")
    assert orjson.loads(ev.encode(event)) == {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/devices/pump-7",
        "type": READING_TYPE,
        "time": TIME,
        "deviceid": "pump-7",
        "seq": 42,
        "data": {"t": {"v": 1}},
    }


def test_new_gap_counts_its_range() -> None:
    gap = ev.new_gap("pump-7", 50, 3, 9, "evicted", time=TIME)
    assert gap.type == GAP_TYPE
    assert gap.data == {"first": 3, "last": 9, "count": 7, "reason": "evicted"}
    assert ev.decode(ev.encode(gap)) == gap


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: ev.new_reading("pump-7", 1, {"t": {"v": math.nan}}), "bad_data"),
        (lambda: ev.new_reading("pump-7", 1, {"t": {"v": math.inf}}), "bad_data"),
        (lambda: ev.new_reading("pump-7", 1, {"t": {"v": 2**64}}), "bad_data"),
        (lambda: ev.new_reading("pump-7", 1, {"t": {"v": None}}), "bad_data"),
        (lambda: ev.new_reading("pump-7", 1, {}), "bad_data"),
        (lambda: ev.new_reading("a/b", 1, {"t": {"v": 1}}), "bad_attribute"),
        (lambda: ev.new_reading("pump-7", 0, {"t": {"v": 1}}), "bad_seq"),
        (lambda: ev.new_reading("pump-7", True, {"t": {"v": 1}}), "bad_seq"),
        (lambda: ev.new_reading("pump-7", 1, {"t": {"v": 1}}, time="yesterday"), "bad_time"),
        (lambda: ev.new_reading("pump-7", 1, {"t": {"v": 1}}, event_id=""), "bad_attribute"),
        (lambda: ev.new_reading("pump-7", 1, {"t": {"v": 1}}, monotime=-1), "bad_attribute"),
        (lambda: ev.new_reading("pump-7", 1, {"t": {"v": 1}}, clocksynced=1), "bad_attribute"),  # type: ignore
        (lambda: ev.new_gap("pump-7", 9, 3, 9, "evicted"), "bad_data"),
        (lambda: ev.new_gap("pump-7", 50, 9, 3, "evicted"), "bad_data"),
        (lambda: ev.new_gap("pump-7", 50, 0, 3, "evicted"), "bad_data"),
        (lambda: ev.new_gap("pump-7", 50, 1, "3", "evicted"), "bad_data"),  # type: ignore[arg-type]
        (lambda: ev.new_gap("pump-7", 50, 1, 3, ""), "bad_data"),
        (lambda: ev.new_gap("pump-7", "50", 1, 3, "evicted"), "bad_seq"),  # type: ignore[arg-type]
    ],
)
def test_builders_refuse_what_the_decoder_would(call: Callable[[], Event], reason: str) -> None:
    assert reason_of(call)[0] == reason


@FAST
@given(events())
def test_any_valid_event_round_trips(event: Event) -> None:
    assert ev.decode(ev.encode(event), known_types=None) == event
    assert ev.from_dict(orjson.loads(orjson.dumps(ev.to_dict(event)))) == event


@FAST
@given(st.lists(events(), min_size=1, max_size=5))
def test_any_valid_batch_round_trips(batch: list[Event]) -> None:
    payload = ev.encode_batch(batch)
    assert ev.decode_batch(payload) == batch
    assert ev.decode_message(payload) == batch


def test_decode_message_takes_one_event_or_a_batch() -> None:
    event = ev.new_reading("pump-7", 1, {"t": {"v": 1}})
    assert ev.decode_message(ev.encode(event)) == [event]
    assert ev.decode_message(ev.encode_batch([event, event._replace(seq=2)]))[1].seq == 2


def test_payload_may_be_any_buffer_or_str() -> None:
    payload = ev.encode(ev.new_reading("pump-7", 1, {"t": {"v": 1}}))
    decoded = ev.decode(payload)
    assert ev.decode(bytearray(payload)) == decoded
    assert ev.decode(memoryview(payload)) == decoded
    assert ev.decode(payload.decode()) == decoded


def test_event_is_immutable_and_derivable() -> None:
    event = ev.new_reading("pump-7", 1, {"t": {"v": 1}})
    with pytest.raises(AttributeError):
        event.seq = 2  # type: ignore[misc]
    processed = event._replace(type=PROCESSED_TYPE, data={"site": "north"})
    assert (processed.id, processed.deviceid, processed.seq) == (event.id, event.deviceid, event.seq)
    assert ev.decode(ev.encode(processed)) == processed


def test_extensions_pass_through_but_never_override_the_envelope() -> None:
    decoded = ev.decode(orjson.dumps(wire(subject="pump", priority=3, datacontenttype="application/json")))
    assert decoded.extensions == {"subject": "pump", "priority": 3, "datacontenttype": "application/json"}
    assert orjson.loads(ev.encode(decoded))["priority"] == 3
    forged = decoded._replace(extensions={"seq": 99, "source": "/devices/other", "data_base64": "AA=="})
    obj = orjson.loads(ev.encode(forged))
    assert (obj["seq"], obj["source"], "data_base64" in obj) == (42, "/devices/pump-7", False)


def test_null_optional_attributes_are_absent() -> None:
    decoded = ev.decode(orjson.dumps(wire(bootid=None, monotime=None, clocksynced=None, subject=None)))
    assert decoded == ev.decode(orjson.dumps(wire()))
    assert decoded.extensions == {}


@pytest.mark.parametrize(
    "time",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01t12:00:00z",
        "2024-05-01T12:00:00.5+02:00",
        "2024-05-01T12:00:00.123456789-08:30",
        "2016-12-31T23:59:60Z",
    ],
)
def test_rfc3339_times_are_accepted(time: str) -> None:
    assert ev.decode(orjson.dumps(wire(time=time))).time == time


def test_encoding_an_event_built_around_the_validators_raises_envelope_error() -> None:
    broken = Event("e", "pump-7", 1, READING_TYPE, TIME, {"t": {"v": 2**70}})
    assert reason_of(lambda: ev.encode(broken))[0] == "not_json"
    assert reason_of(lambda: ev.encode_batch([]))[0] == "empty_batch"


def test_helpers() -> None:
    assert ev.is_deviceid("pump-7") and not ev.is_deviceid("pump 7") and not ev.is_deviceid(7)
    ids = {ev.new_event_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(uuid.UUID(i).version == 7 for i in ids)
    assert ev.parse_time("2024-05-01T12:00:00+02:00").utcoffset() is not None
    assert ev.parse_time(ev.now_rfc3339()).utcoffset() == ev.parse_time(TIME).utcoffset()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_never_pass_even_outside_json(value: float) -> None:
    # orjson refuses them when parsing and would write them as null: only Python code can hand them in.
    assert reason_of(lambda: ev.from_dict(wire(data={"t": {"v": value}}))) == ("bad_data", None)


# --- rejection, one reason per malformation --------------------------------------------------------

REJECTED_EVENTS: list[tuple[dict[str, Any], str]] = [
    *[(wire(**{name: ...}), "missing_attribute") for name in ev.to_dict(ev.decode(orjson.dumps(wire())))],
    *[(wire(**{name: None}), "missing_attribute") for name in ("id", "source", "time", "seq", "data")],
    (wire(specversion="0.3"), "bad_specversion"),
    (wire(specversion=1.0), "bad_specversion"),
    (wire(id=""), "bad_attribute"),
    (wire(id=7), "bad_attribute"),
    (wire(id="a\nb"), "bad_attribute"),
    (wire(id="x" * 257), "bad_attribute"),
    *[
        (wire(deviceid=bad, source=f"/devices/{bad}"), "bad_attribute")
        for bad in ["", "a/b", "a+b", "a#b", "a b", "a\0b", "a\tb", "a\u2028b", "x" * 129, 7, ["a"]]
    ],
    (wire(source="/devices/other"), "source_mismatch"),
    (wire(source="devices/pump-7"), "source_mismatch"),
    (wire(source=7), "bad_attribute"),
    (wire(type=""), "bad_attribute"),
    (wire(type=["x"]), "bad_attribute"),
    (wire(type="com.example.other"), "unknown_type"),
    *[(wire(seq=bad), "bad_seq") for bad in [0, -1, 2**63, True, False, 1.0, "1", [1]]],
    *[
        (wire(time=bad), "bad_time")
        for bad in [
            "",
            1714564800,
            "2024-05-01",
            "2024-05-01T12:00:00",  # no offset
            "2024-05-01 12:00:00Z",
            "2024-05-01T12:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00,5Z",
            "2024-05-01T12:00:00.1234567890Z",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00+02:00:00",
            "2024-02-30T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:61Z",
            "2024-13-01T12:00:00Z",
            "\uff12\uff10\uff12\uff14-05-01T12:00:00Z",  # fullwidth digits
            "20240501T120000Z",
        ]
    ],
    (wire(bootid=""), "bad_attribute"),
    (wire(bootid=5), "bad_attribute"),
    (wire(epoch=""), "bad_attribute"),
    (wire(epoch="ABC"), "bad_attribute"),
    (wire(epoch="a" * 65), "bad_attribute"),
    (wire(epoch=12), "bad_attribute"),
    (wire(epoch="a/b"), "bad_attribute"),
    (wire(monotime=-1), "bad_attribute"),
    (wire(monotime=1.5), "bad_attribute"),
    (wire(monotime=True), "bad_attribute"),
    (wire(clocksynced=0), "bad_attribute"),
    (wire(clocksynced="false"), "bad_attribute"),
    (wire(Subject="x"), "bad_attribute"),
    (wire(**{"my-ext": "x"}), "bad_attribute"),
    (wire(ext=1.5), "bad_attribute"),
    (wire(ext={"a": 1}), "bad_attribute"),
    (wire(ext=[1]), "bad_attribute"),
    (wire(datacontenttype="text/plain"), "bad_attribute"),
    (wire(data_base64="AAAA"), "bad_data"),
    *[
        (wire(data=bad), "bad_data")
        for bad in [
            {},
            [],
            "x",
            7,
            {"": {"v": 1}},
            {"t": 1},
            {"t": {}},
            {"t": {"u": "Cel"}},
            {"t": {"v": None}},
            {"t": {"v": [1]}},
            {"t": {"v": {"a": 1}}},
            {"t": {"v": 1, "u": ""}},
            {"t": {"v": 1, "u": 5}},
            {"t": {"v": 1, "u": "x" * 33}},
            {"t": {"v": 1, "x": 1}},
            {"t": {"v": 1, "u": "Cel", "x": 1}},
            {"a\nb": {"v": 1}},
        ]
    ],
    (gap_wire(first=0), "bad_data"),
    (gap_wire(first=10), "bad_data"),
    (gap_wire(last=50, count=48), "bad_data"),
    (gap_wire(count=6), "bad_data"),
    (gap_wire(first=True), "bad_data"),
    (gap_wire(reason=""), "bad_data"),
    (gap_wire(reason=...), "bad_data"),
    (gap_wire(extra=1), "bad_data"),
    (wire(type=PROCESSED_TYPE, data=[1]), "bad_data"),
]


@pytest.mark.parametrize(("obj", "reason"), REJECTED_EVENTS)
def test_each_malformation_has_its_reason(obj: dict[str, Any], reason: str) -> None:
    payload = orjson.dumps(obj)
    assert reason_of(lambda: ev.decode(payload)) == (reason, None)
    assert reason_of(lambda: ev.decode_batch(orjson.dumps([wire(), obj]))) == (reason, 1)
    assert reason_of(lambda: ev.decode_message(orjson.dumps([wire(), obj]))) == (reason, 1)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: ev.decode(orjson.dumps(wire()), max_bytes=10), "oversized"),
        (lambda: ev.decode_message(b" " * 300_000), "oversized"),
        (lambda: ev.decode(b""), "not_json"),
        (lambda: ev.decode(b"{"), "not_json"),
        (lambda: ev.decode(b"\xff\xfe"), "not_json"),
        (lambda: ev.decode(b'{"a": NaN}'), "not_json"),
        (lambda: ev.decode(b"[" * 5000 + b"]" * 5000), "too_deep"),
        (lambda: ev.decode(b'"\\ud800"'), "not_json"),
        (lambda: ev.decode(memoryview(orjson.dumps(wire()) * 2)[::2]), "not_json"),
        (lambda: ev.decode(b"[]"), "not_object"),
        (lambda: ev.decode(b"null"), "not_object"),
        (lambda: ev.decode(b"42"), "not_object"),
        (lambda: ev.decode_batch(b"[]"), "empty_batch"),
        (lambda: ev.decode_message(b"[]"), "empty_batch"),
        (lambda: ev.decode_batch(orjson.dumps(wire())), "not_batch"),
        (lambda: ev.decode_message(b'"x"'), "not_object"),
        (lambda: ev.decode_message(b"[1]"), "not_object"),
    ],
)
def test_payload_level_rejections(call: Callable[[], object], reason: str) -> None:
    assert reason_of(call)[0] == reason


def test_max_bytes_is_inclusive() -> None:
    payload = orjson.dumps(wire())
    assert ev.decode(payload, max_bytes=len(payload)).seq == 42


def test_known_types_none_admits_any_type_with_object_data() -> None:
    other = orjson.dumps(wire(type="com.example.other", data={"anything": [1, 2]}))
    assert ev.decode(other, known_types=None).data == {"anything": [1, 2]}
    assert reason_of(lambda: ev.decode(other, known_types=frozenset({READING_TYPE})))[0] == "unknown_type"


def test_decode_message_refuses_another_devices_events() -> None:
    mine, theirs = wire(), wire(deviceid="pump-8", source="/devices/pump-8", seq=43)
    assert len(ev.decode_message(orjson.dumps(mine), deviceid="pump-7")) == 1
    assert reason_of(lambda: ev.decode_message(orjson.dumps(theirs), deviceid="pump-7")) == (
        "device_mismatch",
        None,
    )
    batch = orjson.dumps([mine, theirs])
    assert reason_of(lambda: ev.decode_message(batch, deviceid="pump-7")) == ("device_mismatch", 1)


def test_decode_message_partial_keeps_the_good_events_of_a_batch() -> None:
    items = [wire(seq=1), wire(seq=0), wire(seq=3, deviceid="x", source="/devices/x"), wire(seq=4)]
    good, bad = ev.decode_message_partial(orjson.dumps(items), deviceid="pump-7")
    assert [event.seq for event in good] == [1, 4]
    assert [(r.index, r.error.reason, r.error.index) for r in bad] == [
        (1, "bad_seq", 1),
        (2, "device_mismatch", 2),
    ]
    assert orjson.loads(bad[0].payload) == items[1]
    single_good, single_bad = ev.decode_message_partial(orjson.dumps(wire()))
    assert (len(single_good), single_bad) == (1, [])
    assert reason_of(lambda: ev.decode_message_partial(orjson.dumps(wire(seq=0))))[0] == "bad_seq"
    assert reason_of(lambda: ev.decode_message_partial(b"[]"))[0] == "empty_batch"


# --- totality: nothing but EnvelopeError, whatever comes in -----------------------------------------

DECODERS = [ev.decode, ev.decode_batch, ev.decode_message, ev.decode_message_partial]


def only_envelope_errors(payload: bytes | str) -> None:
    for decoder in DECODERS:
        try:
            decoder(payload)
        except EnvelopeError as exc:
            assert exc.reason in REASONS


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_envelope_error(payload: bytes) -> None:
    only_envelope_errors(payload)


@FAST
@given(json_values)
def test_arbitrary_json_raises_only_envelope_error(value: object) -> None:
    only_envelope_errors(orjson.dumps(value))


@FAST
@given(st.text(max_size=100))
def test_arbitrary_text_raises_only_envelope_error(text: str) -> None:
    only_envelope_errors(text.encode("utf-8", "surrogatepass"))


def _tweak(draw: st.DrawFn, old: object) -> object:
    """A near miss of ``old``: one character or one step off, or another JSON value altogether."""
    if isinstance(old, str) and draw(st.booleans()):
        at = draw(st.integers(0, len(old)))
        return old[:at] + draw(st.text(max_size=2)) + old[at + 1 :]
    if isinstance(old, int) and not isinstance(old, bool) and draw(st.booleans()):
        step = draw(st.sampled_from([-(2**63), -old, -1, 1, 2**63 - 1]))
        return min(max(old + step, -(2**63)), 2**64 - 1)
    return draw(json_values)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event's JSON object with 1-3 deletions, additions or near misses at any depth."""
    obj = orjson.loads(ev.encode(draw(events(kinds=(READING_TYPE, GAP_TYPE)))))  # processed data is lax
    for _ in range(draw(st.integers(1, 3))):
        containers = [obj]
        if isinstance(obj.get("data"), dict):
            containers += [obj["data"], *(m for m in obj["data"].values() if isinstance(m, dict))]
        # Every existing attribute, data key and measurement key equally likely, or a new key anywhere.
        slots = [(container, key) for container in containers for key in container]
        if not slots or draw(st.integers(0, 5)) == 0:
            own = ["bootid", "monotime", "clocksynced", "epoch", "u", "x"]
            extra = st.sampled_from(own) | st.text(max_size=8)
            slots = [(draw(st.sampled_from(containers)), draw(extra))]
        target, key = draw(st.sampled_from(slots))
        if draw(st.integers(0, 3)) == 0:
            target.pop(key, None)
        else:
            target[key] = _tweak(draw, target.get(key))
    return obj


ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**64 - 1,
    -(2**63),
    1.5,
    -0.0,
    "",
    "x",
    "\u0000",
    [],
    [1],
    {},
    {"v": 1},
]


@pytest.mark.parametrize("obj", [wire(bootid="b", monotime=1, clocksynced=True, ext="x", epoch="e1"),
                                 gap_wire()])
def test_every_leaf_replaced_or_deleted_raises_only_envelope_error(obj: dict[str, Any]) -> None:
    """The deterministic half of the mutation property: every attribute and data key, every odd value."""

    def leaves(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        found = []
        for key, value in node.items():
            found.append((*path, key))
            if isinstance(value, dict):
                found += leaves(value, (*path, key))
        return found

    for path in leaves(obj):
        for value in [..., *ODD_VALUES]:
            mutated = orjson.loads(orjson.dumps(obj))
            parent = mutated
            for key in path[:-1]:
                parent = parent[key]
            if value is ...:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            only_envelope_errors(orjson.dumps(mutated))


@FAST
@given(mutated_events())
def test_mutated_valid_events_raise_only_envelope_error(obj: dict[str, Any]) -> None:
    only_envelope_errors(orjson.dumps(obj))
    only_envelope_errors(orjson.dumps([wire(), obj]))


@FAST
@given(
    st.dictionaries(
        st.sampled_from([*wire(), "bootid", "x"]) | st.integers() | st.tuples(st.integers()),
        st.none() | st.integers() | st.sets(st.integers()) | st.builds(object) | st.just(wire()["data"]),
    )
)
def test_from_dict_on_arbitrary_python_objects_raises_only_envelope_error(obj: dict[Any, Any]) -> None:
    try:
        ev.from_dict(obj, known_types=None)
    except EnvelopeError as exc:
        assert exc.reason in REASONS


# --- the fast tier agrees with the detailed checks -------------------------------------------------


def detailed_from_dict(obj: object, known_types: frozenset[str] | None) -> Event:
    """``from_dict`` through the detailed checks alone: the reference the fast tier must agree with."""
    fields = v.check_attributes(obj, None, known_types)
    type_, data = fields[3], fields[5]
    if type_ == READING_TYPE:
        if not isinstance(data, dict) or not data:
            raise EnvelopeError("bad_data", "reading data must be a non-empty object")
        for name, measurement in data.items():
            v._check_measurement(name, measurement, None)
    elif type_ == GAP_TYPE:
        v.check_gap_data(data, fields[2], None)
    else:
        v.check_object_data(data, None)
    return Event._make(fields)


def outcome(call: Callable[[], object]) -> object:
    """What a decoder call gives: its value, or the reason and index it refuses with."""
    try:
        return call()
    except EnvelopeError as exc:
        return (exc.reason, exc.index)


def assert_tiers_agree(obj: object, known_types: frozenset[str] | None = ev.DEFAULT_KNOWN_TYPES) -> None:
    expected = outcome(lambda: detailed_from_dict(obj, known_types))
    fast = fast_attributes(obj, known_types)
    assert fast is None or fast == v.check_attributes(obj, None, known_types)
    # Twice: the first call may learn the event's strings, the second finds them remembered.
    assert outcome(lambda: ev.from_dict(obj, known_types=known_types)) == expected
    assert outcome(lambda: ev.from_dict(obj, known_types=known_types)) == expected


def test_the_common_shape_takes_the_fast_tier() -> None:
    """Otherwise the fast tier would stay correct but silently stop paying for itself."""
    agent = wire(bootid="b1", monotime=81234, clocksynced=True, epoch="0f3a9c2e7b1d4a60")
    for obj in [wire(), agent, wire(time="2024-05-01T12:00:00Z"), gap_wire()]:
        assert fast_attributes(obj, ev.DEFAULT_KNOWN_TYPES) is not None
    for slow in [wire(time="2024-05-01T12:00:00.5+02:00"), wire(subject="x"), wire(bootid=None)]:
        assert fast_attributes(slow, ev.DEFAULT_KNOWN_TYPES) is None
        assert ev.from_dict(slow) == detailed_from_dict(slow, ev.DEFAULT_KNOWN_TYPES)


@FAST
@given(events(), st.sampled_from([ev.DEFAULT_KNOWN_TYPES, None, frozenset({READING_TYPE, ""})]))
def test_fast_tier_agrees_on_valid_events(event: Event, known_types: frozenset[str] | None) -> None:
    assert_tiers_agree(orjson.loads(ev.encode(event)), known_types)


@FAST
@given(mutated_events())
def test_fast_tier_agrees_on_mutated_events(obj: dict[str, Any]) -> None:
    assert_tiers_agree(obj)


@pytest.mark.parametrize(("obj", "reason"), REJECTED_EVENTS)
def test_fast_tier_agrees_on_each_malformation(obj: dict[str, Any], reason: str) -> None:
    assert_tiers_agree(obj)
    assert_tiers_agree(orjson.loads(orjson.dumps(obj)))


def parses(time: str) -> bool:
    try:
        ev.parse_time(time)
    except EnvelopeError:
        return False
    return True


common_times = st.from_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,4})?[Zz]", fullmatch=True)


@FAST
@given(common_times | common_times.map(lambda t: t[:-1] + "+00:00") | st.text(max_size=26))
def test_fast_time_check_accepts_only_what_parse_time_accepts(time: str) -> None:
    assert not is_common_time(time) or parses(time)
    assert_tiers_agree(wire(time=time))


@FAST
@given(
    st.integers(1, 9999), st.integers(1, 12), st.integers(1, 31), st.integers(0, 86399), st.integers(0, 999),
)
def test_fast_time_check_takes_every_valid_common_time(y: int, mo: int, d: int, s: int, ms: int) -> None:
    time = f"{y:04d}-{mo:02d}-{d:02d}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
    for text in (f"{time}Z", f"{time}.{ms:03d}Z"):
        assert is_common_time(text) == parses(text)


def test_remembered_strings_stay_bounded_and_never_change_an_answer() -> None:
    for i in range(v._SEEN_LIMIT + 10):
        deviceid = f"dev-{i}"
        obj = wire(deviceid=deviceid, source=f"/devices/{deviceid}", bootid=f"b-{i}",
                   data={f"m{i}": {"v": i, "u": f"u{i % 1000}"}})
        assert ev.from_dict(obj).deviceid == deviceid
    for seen in (v._seen_sources, v._seen_ids, v._seen_names, v._seen_units):
        assert 0 < len(seen) <= v._SEEN_LIMIT
    assert reason_of(lambda: ev.from_dict(wire(source="/devices/dev-1"))) == ("source_mismatch", None)
    assert reason_of(lambda: ev.from_dict(wire(data={"m1": {"v": 1, "u": "u1" * 20}}))) == ("bad_data", None)
