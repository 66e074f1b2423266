"""`edgebridge demo`: the main job of the README's `make demo`.

Until the agent, bridge and enricher stand, the demo proves the ground they stand on: it brings up the
local brokers (real Mosquitto, real single-node Kafka), publishes a simulated device's readings as
CloudEvents over MQTT QoS 1, receives them from the broker, writes them to Kafka with an idempotent
producer keyed by device id, reads them back with a ``read_committed`` consumer and checks that every
``seq`` arrived exactly once and in order. It prints each step with counts and timings.
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
import uuid
from collections.abc import Sequence

from edgebridge.devbrokers import LocalBrokers, default_state_dir
from edgebridge.envelope import CONTENT_TYPE, decode, encode, new_reading
from edgebridge.errors import EdgeBridgeError
from edgebridge.topics import events_topic

__all__ = ["main"]


def _readings(device: str, n: int) -> list[bytes]:
    rng = random.Random(device)
    out = []
    for seq in range(1, n + 1):
        temp = 21.0 + 3 * math.sin(seq / 20) + rng.gauss(0, 0.2)
        data = {"temperature": {"v": round(temp, 2), "u": "Cel"},
                "humidity": {"v": round(45 + rng.gauss(0, 2), 1), "u": "%RH"}}
        out.append(encode(new_reading(device, seq, data)))
    return out


def _mqtt_leg(url_host: str, port: int, device: str, payloads: list[bytes]) -> list[bytes]:
    import paho.mqtt.client as mqtt

    topic = events_topic(device, prefix=f"demo-{uuid.uuid4().hex[:6]}")
    received: list[bytes] = []
    done, subscribed = threading.Event(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-sub-{device}", protocol=mqtt.MQTTv5)

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        received.append(bytes(msg.payload))
        if len(received) == len(payloads):
            done.set()

    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(url_host, port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
    try:
        subscribed.wait(10)
        pub.connect(url_host, port)
        pub.loop_start()
        infos = [pub.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(30)
        print(f"  mqtt: published {len(payloads)} events to {topic} at QoS 1, "
              f"{sum(i.is_published() for i in infos)} PUBACKs")
        done.wait(30)
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
    print(f"  mqtt: a subscriber received {len(received)} of them")
    return received


def _kafka_leg(bootstrap: str, device: str, payloads: list[bytes]) -> list[bytes]:
    from confluent_kafka import Consumer, Producer

    topic = f"demo.events.raw.{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors: list[object] = []
    for p in payloads:
        producer.produce(topic, key=device.encode(), value=p, headers={"content-type": CONTENT_TYPE},
                         on_delivery=lambda err, _m: errors.append(err) if err else None)
        producer.poll(0)
    left = producer.flush(30)
    print(f"  kafka: produced {len(payloads)} records to {topic} (idempotent, key={device}), "
          f"{left} undelivered, {len(errors)} delivery errors")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < len(payloads) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                values.append(msg.value() or b"")
    finally:
        consumer.close()
    print(f"  kafka: a read_committed consumer read {len(values)} records back")
    return values


def main(argv: Sequence[str], prog: str = "edgebridge demo") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Bring up the local brokers and prove an event round trip through MQTT and Kafka.",
    )
    parser.add_argument("--events", type=int, default=500, help="events the simulated device sends")
    parser.add_argument("--device", default="demo-sensor-1", help="the simulated device's id")
    parser.add_argument("--state-dir", default=None, help=f"brokers' state (default {default_state_dir()})")
    parser.add_argument("--keep", action="store_true", help="leave the brokers running afterwards")
    args = parser.parse_args(list(argv))

    brokers = LocalBrokers(args.state_dir)
    began = time.monotonic()
    try:
        status = brokers.up()
    except EdgeBridgeError as exc:
        print(f"{prog}: {exc}")
        return 1
    m, k = status["mosquitto"], status["kafka"]
    print(f"1. brokers up in {time.monotonic() - began:.1f}s: mosquitto {m['url']} "
          f"(max_inflight_messages={m['max_inflight_messages']}, "
          f"max_queued_messages={m['max_queued_messages']}), "
          f"kafka {k['bootstrap']} {k['version']} KRaft (rss {k['rss_mb']} MB)")
    try:
        payloads = _readings(args.device, args.events)
        print(f"2. device {args.device}: {len(payloads)} readings as CloudEvents, seq 1..{len(payloads)}")
        via_mqtt = _mqtt_leg("127.0.0.1", brokers.mosquitto.port, args.device, payloads)
        via_kafka = _kafka_leg(brokers.kafka.bootstrap, args.device, via_mqtt)
        seqs = [decode(v).seq for v in via_kafka]
        ok = seqs == list(range(1, args.events + 1))
        print(f"3. check: {len(set(seqs))} distinct seqs of {args.events}, in order: {ok}")
        return 0 if ok else 1
    finally:
        if args.keep:
            print("brokers left running: `edgebridge brokers env` / `edgebridge brokers down`")
        else:
            brokers.down()
            print("brokers stopped (data kept in the state folder)")
