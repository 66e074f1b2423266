"""The MQTT adapter (edgebridge/mqtt/), without a broker: the fast paths give what paho's own code
gives (incoming PUBLISH, outgoing receipts, PUBACKs with and without paho's in-flight limit), the
buffered sockets keep order, the reconnect wait is jittered under paho's ceiling, and paho is pinned once."""

from __future__ import annotations

import random
import re
import socket
import time
import tomllib
from pathlib import Path

import pytest
from paho.mqtt.exception import MalformedPacket, MQTTException

from edgebridge.mqtt.sockets import BufferedSocket, ReadBufferedSocket

ROOT = Path(__file__).resolve().parent.parent

# -- paho fast path for incoming PUBLISH (edgebridge.mqtt.threaded): same result as paho's own decoding ----

def _publish_body(topic: bytes, mid: int | None, props: bytes, payload: bytes) -> bytes:
    def s16(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    size, varint = len(props), bytearray()
    while True:
        size, digit = divmod(size, 128)
        varint.append(digit | (0x80 if size else 0))
        if not size:
            break
    return s16(topic) + (mid.to_bytes(2, "big") if mid is not None else b"") + bytes(varint) + props + payload


def _decode_with(client: object, header: int, body: bytes) -> object:
    got: list[object] = []
    client.on_message = lambda c, u, m: got.append(m)  # type: ignore[attr-defined]
    client._in_packet = {"command": header, "packet": body}  # type: ignore[attr-defined]
    assert client._handle_publish() == 0  # type: ignore[attr-defined]
    assert len(got) == 1
    return got[0]


def _both(header: int, body: bytes) -> tuple[object, object]:
    import paho.mqtt.client as mqtt

    from edgebridge.mqtt.threaded import new_client
    from edgebridge.settings import MqttSettings

    fast = new_client(MqttSettings(), "unit", manual_ack=True)
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="unit", protocol=mqtt.MQTTv5,
                        manual_ack=True)
    return _decode_with(fast, header, body), _decode_with(plain, header, body)


def test_fast_publish_decoding_matches_paho() -> None:
    from edgebridge.mqtt.incoming import FastMessage

    def s16(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    long_value = b"v" * 300  # a property length of two bytes
    props = (b"\x03" + s16(b"application/cloudevents+json") + b"\x26" + s16(b"eventid") + s16(b"e-1")
             + b"\x26" + s16(b"big") + s16(long_value) + b"\x09" + s16(b"\x00corr") + b"\x01\x01"
             + b"\x02\x00\x00\x01\x00" + b"\x08" + s16(b"reply/here"))
    cases = [
        (0x3A, _publish_body(b"p/devices/d-1/events", 513, props, b'{"x":1}')),  # QoS 1, dup
        (0x32, _publish_body("p/devices/dé/events".encode(), 7, b"", b"")),  # no properties, empty payload
        # QoS 0, retained
        (0x31, _publish_body(b"p/devices/d-1/status", None, b"\x03" + s16(b"text/plain"), b"on")),
    ]
    for header, body in cases:
        fast, paho = _both(header, body)
        assert isinstance(fast, FastMessage)
        for name in ("topic", "payload", "qos", "mid", "dup", "retain"):
            assert getattr(fast, name) == getattr(paho, name), name
        for name in ("ContentType", "CorrelationData", "UserProperty", "PayloadFormatIndicator",
                     "MessageExpiryInterval", "ResponseTopic"):
            assert getattr(fast.properties, name) == getattr(paho.properties, name, None), name  # type: ignore[attr-defined]


def test_fast_publish_leaves_other_shapes_to_paho() -> None:
    import paho.mqtt.client as mqtt

    def s16(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    cases = [
        (0x32, _publish_body(b"p/devices/d-1/events", 1, b"\x23\x00\x01", b"x")),  # a topic alias
        (0x32, _publish_body(b"p/devices/d-1/events", 1, b"\x0b\x05", b"x")),  # a subscription identifier
        (0x32, _publish_body(b"p/devices/\xff/events", 1, b"", b"x")),  # invalid UTF-8 topic
    ]
    twice = b"\x03" + s16(b"a/b") + b"\x03" + s16(b"c/d")  # a property other than user property, twice
    with pytest.raises(MQTTException):
        _both(0x32, _publish_body(b"p/devices/d-1/events", 1, twice, b"x"))
    for header, body in cases:
        fast, _ = _both(header, body)
        assert isinstance(fast, mqtt.MQTTMessage)
    # invalid UTF-8 in a property: paho's verdict, a malformed packet (the connection is dropped)
    with pytest.raises(MalformedPacket):
        _both(0x32, _publish_body(b"p/devices/d-1/events", 1, b"\x26" + s16(b"k") + s16(b"\xff"), b"x"))


# -- receipts going out (edgebridge.mqtt.threaded): an interval's receipts in one write ----

class _Wire:
    """A connected socket as paho sees it: records each ``send``."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sends.append(bytes(data))
        return len(data)

    def close(self) -> None:
        pass


def test_receipts_go_as_one_write_with_the_bytes_paho_would_send() -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edgebridge.mqtt.properties import PackedProperties
    from edgebridge.mqtt.threaded import new_client
    from edgebridge.receipts import RECEIPT_CONTENT_TYPE, encode_receipt
    from edgebridge.settings import MqttSettings

    receipts = [(f"p/d-{i}/receipts", encode_receipt(f"d-{i}", "e1", [(1, i + 1)])) for i in range(3)]
    receipts.append(("p/long/receipts", b"r" * 300))  # a remaining length of two bytes
    ours = new_client(MqttSettings(), "unit", manual_ack=True)
    ours._sock = _Wire()  # type: ignore[assignment]
    assert ours.publish_all(receipts, PackedProperties(RECEIPT_CONTENT_TYPE)) == 4
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="unit", protocol=mqtt.MQTTv5)
    paho._sock = _Wire()  # type: ignore[assignment]
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = RECEIPT_CONTENT_TYPE
    for topic, payload in receipts:
        paho.publish(topic, payload, qos=1, properties=props)
    assert len(ours._sock.sends) == 1 and len(paho._sock.sends) == 4  # type: ignore[attr-defined]
    assert ours._sock.sends[0] == b"".join(paho._sock.sends)  # type: ignore[attr-defined]
    # held as paho holds its own, so that a reconnect resends them (properties packed the same way)
    assert ours.unacknowledged == 4 and sorted(ours._out_messages) == sorted(paho._out_messages)
    held = ours._out_messages[1]
    assert held.state == mqtt.mqtt_ms_wait_for_puback and held.properties is not None
    assert held.properties.pack() == props.pack() and held.topic == "p/d-0/receipts"


def test_receipt_pubacks_success_fast_refusal_through_paho() -> None:
    from edgebridge.mqtt.properties import PackedProperties
    from edgebridge.mqtt.threaded import new_client
    from edgebridge.settings import MqttSettings

    client = new_client(MqttSettings(), "unit", manual_ack=True)
    client.max_inflight_messages_set(0)
    client._sock = _Wire()  # type: ignore[assignment]
    refused: list[object] = []
    client.on_publish = lambda c, u, mid, reason, props: refused.append((mid, reason.is_failure))
    assert client.publish_all([(f"p/d-{i}/receipts", b"{}") for i in range(4)], PackedProperties("x")) == 4
    for body in (b"\x00\x01", b"\x00\x02\x00", b"\x00\x03\x10\x00"):  # plain, success code, no match
        client._in_packet = {"command": 0x40, "packet": body}  # type: ignore[assignment]
        assert client._handle_pubackcomp("PUBACK") == 0
    assert client.unacknowledged == 1 and refused == []  # taken without on_publish
    client._in_packet = {"command": 0x40, "packet": b"\x00\x04\x87\x00"}  # type: ignore[assignment]
    client._handle_pubackcomp("PUBACK")  # Not authorized: paho's path, to on_publish (counted there)
    assert refused == [(4, True)] and client.unacknowledged == 0
    assert client.publish_all([("p/d/receipts", b"{}")], PackedProperties("x")) == 1
    client._sock = None
    assert client.publish_all([("p/d/receipts", b"{}")], PackedProperties("x")) == 0  # no connection


def test_pubacks_under_an_in_flight_limit_send_what_waited_for_room() -> None:
    """The downlink's client keeps paho's in-flight limit: a PUBACK there must go through paho, which
    sends the next queued command; taken by the fast path, the 21st command of a burst never left."""
    import paho.mqtt.client as mqtt

    from edgebridge.mqtt.threaded import new_client
    from edgebridge.settings import MqttSettings

    client = new_client(MqttSettings(), "unit", manual_ack=False)
    client.max_inflight_messages_set(2)
    client._sock = _Wire()  # type: ignore[assignment]
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    infos = [client.publish(f"p/d/commands/{i}", b"x", qos=1) for i in range(3)]
    assert [client._out_messages[i.mid].state for i in infos] == [
        mqtt.mqtt_ms_wait_for_puback, mqtt.mqtt_ms_wait_for_puback, mqtt.mqtt_ms_queued]
    client._in_packet = {"command": 0x40, "packet": bytes([0, infos[0].mid])}  # type: ignore[assignment]
    client._handle_pubackcomp("PUBACK")
    assert infos[0].is_published()
    assert client._out_messages[infos[2].mid].state == mqtt.mqtt_ms_wait_for_puback  # sent now


# -- the buffered sockets (edgebridge.mqtt.sockets) -----------------------------------------------

def test_buffered_socket_keeps_order_through_partial_writes_and_split_reads() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        sock = BufferedSocket(a)
        packets = [bytes([i % 251]) * 1000 for i in range(3000)]  # 3 MB: more than the kernel buffers
        for p in packets:
            assert sock.send(p) == len(p)
        expected = b"".join(packets)
        received = bytearray()
        partial = 0
        deadline = time.monotonic() + 30
        while (sock.unsent or len(received) < len(expected)) and time.monotonic() < deadline:
            assert sock.flush()
            partial += bool(sock.unsent)
            received += b.recv(1 << 20)
        assert received == expected
        assert partial >= 1  # the kernel took only part of it at least once
        # reads: one recv syscall, handed out in paho's sizes
        b.sendall(b"\x40\x02\x00\x01\x40\x02\x00\x02")  # a socketpair delivers at once
        got = [sock.recv(1), sock.recv(1), sock.recv(2), sock.recv(1), sock.recv(1), sock.recv(2)]
        assert got == [b"\x40", b"\x02", b"\x00\x01", b"\x40", b"\x02", b"\x00\x02"]
        assert not sock.buffered()
        sock.close()
        assert a.fileno() == -1


def test_read_buffered_socket_reports_what_it_holds_and_writes_through() -> None:
    a, b = socket.socketpair()
    with a, b:
        sock = ReadBufferedSocket(a)
        assert sock.send(b"\x40\x02\x00\x01") == 4 and b.recv(16) == b"\x40\x02\x00\x01"  # no buffer
        b.sendall(b"\x40\x02\x00\x01\x40\x02\x00\x02")
        assert sock.recv(1) == b"\x40" and sock.pending() == 7  # paho's loop then reads on at once
        assert sock.recv(3) == b"\x02\x00\x01" and sock.recv(8) == b"\x40\x02\x00\x02"  # short read
        assert sock.pending() == 0 and not sock.buffered()
        assert sock.getsockname() == a.getsockname()  # anything else: the socket's own
        sock.close()
        assert a.fileno() == -1


# -- reconnect waits (edgebridge.mqtt.threaded): full jitter under paho's doubling ceiling -------------

class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _waits(client: object, clock: _Clock, n: int) -> list[float]:
    out = []
    for _ in range(n):
        before = clock.now
        client._reconnect_wait()  # type: ignore[attr-defined]
        out.append(clock.now - before)
    return out


def test_reconnect_waits_are_jittered_never_longer_than_pahos_and_start_over_after_a_connack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import paho.mqtt.client as mqtt

    import edgebridge.mqtt.threaded as threaded
    from edgebridge.retry import Backoff
    from edgebridge.settings import MqttSettings

    clock = _Clock()
    monkeypatch.setattr(threaded, "time", clock)
    seeds = iter(range(100))  # each client's backoff its own seeded draws: the test never flakes
    monkeypatch.setattr(threaded, "Backoff",
                        lambda lo, hi: Backoff(lo, hi, rng=random.Random(next(seeds))))
    clients = [threaded.new_client(MqttSettings(), f"unit-{i}", manual_ack=True) for i in range(2)]
    for client in clients:
        client._state = mqtt._ConnectionState.MQTT_CS_CONNECT_ASYNC  # paho's thread, retrying
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]  # paho's own waits with min_delay=1, max_delay=30
    runs = [_waits(client, clock, len(ceilings)) for client in clients]
    for waits in runs:
        assert all(0.5 <= w <= c for w, c in zip(waits, ceilings, strict=True))  # floor: min_delay / 2
        assert sum(waits) < 0.9 * sum(ceilings)  # not paho's fixed doubling
    assert runs[0] != runs[1]  # two clients that lost the same broker do not retry together
    assert max(clock.slept) <= 1.0  # in steps, so that loop_stop() ends a wait within a second
    # a successful CONNACK (paho sets _reconnect_delay to None): the ceiling starts over at min_delay
    client = clients[0]
    client._reconnect_delay = None
    assert 0.5 <= _waits(client, clock, 1)[0] <= 1 and client._backoff.ceiling() == 2  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="min_delay"):  # in the caller's thread, not paho's
        client.reconnect_delay_set(5, 1)
    # loop_stop() or disconnect(): no wait at all
    client._thread_terminate = True
    assert _waits(client, clock, 1) == [0.0]
    client._thread_terminate = False
    client._state = mqtt._ConnectionState.MQTT_CS_DISCONNECTING
    assert _waits(client, clock, 1) == [0.0]


# -- the pin (edgebridge.mqtt.PAHO_REQUIREMENT) -------------------------------------------------------

def test_paho_is_pinned_once_and_the_pin_holds_for_the_installed_paho() -> None:
    from importlib.metadata import version

    from edgebridge.mqtt import PAHO_REQUIREMENT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra]
    assert [r for r in requirements if r.startswith("paho")] == [PAHO_REQUIREMENT]
    for extra in ("agent", "cloud"):
        assert "edgebridge[mqtt]" in project["optional-dependencies"][extra], extra
    # no other product file states paho's versions (a second pin would drift from this one)
    stated = [
        f"{path.relative_to(ROOT)}: {match}"
        for package in ("edgebridge", "edge_agent", "bridge", "enricher", "simulators")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "edgebridge" / "mqtt" / "__init__.py"
        for match in re.findall(r"paho-mqtt\s*[<>=!~][^\s`'\"]*", path.read_text())
    ]
    assert stated == []
    lower, upper = re.fullmatch(r"paho-mqtt>=([\d.]+),<([\d.]+)", PAHO_REQUIREMENT).groups()  # type: ignore[union-attr]

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split(".")[:3])

    assert key(lower) <= key(version("paho-mqtt")) < key(upper)
