"""Schema evolution end to end (docs/schema.md): an agent of today and a newer one side by side.

The newer agent's readings carry extension attributes nobody here knows, and between them it sends
events of a type of its deployment's own (``com.example.vibration.v1``) in the same seq stream. With
that type in the bridge's and the enricher's ``known_types``, everything of both devices must reach
``iot.events.processed`` once: the readings enriched with their unknown attributes kept, the new
type as it came, and no gap alert for the seqs the new type took. Read back by a separate
read-committed consumer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson

from edgebridge.envelope import GAP_TYPE, PROCESSED_TYPE, READING_TYPE, new_reading, to_dict
from simulators.audit import read_topic
from tests.e2e.conftest import Key, Pipeline, counts
from tests.e2e.test_fuzz import MqttAttacker
from tests.waiting import wait_for

VIBRATION = "com.example.vibration.v1"
KNOWN = [READING_TYPE, GAP_TYPE, VIBRATION]
NEWER = "schema-newer"
EVENTS = 60


def newer_agent_events(epoch: str) -> list[dict[str, Any]]:
    """Seqs 1..EVENTS: every third a vibration event, the others readings with two attributes of a
    later firmware (``subject`` is CloudEvents' own optional attribute, ``firmware`` an extension)."""
    out = []
    for seq in range(1, EVENTS + 1):
        obj = to_dict(new_reading(NEWER, seq, {"temperature": {"v": 20 + seq / 10, "u": "Cel"}},
                                  epoch=epoch))
        if seq % 3 == 0:
            obj["type"], obj["data"] = VIBRATION, {"rms": [seq / 100, seq / 50], "axis": "z", "peak": None}
        else:
            obj["firmware"], obj["subject"] = "2.0.1", "pump-housing"
        out.append(obj)
    return out


def test_a_newer_agent_beside_an_old_one_loses_nothing_and_keeps_what_it_added(
        pipeline: Callable[..., Pipeline]) -> None:
    p = pipeline()
    p.start_enricher(pipeline={"known_types": KNOWN})
    bridge = p.bridge(known_types=KNOWN).start()
    # healthy = subscribed: the newer agent below is a bare client, which does not resend unreceipted
    # events the way an agent does, so nothing of it may go out before the bridge's subscription
    assert bridge.wait_healthy(30), f"bridge not healthy; see {bridge.log_path}"
    p.agent("schema-today", events=EVENTS, rate=100).start()

    epoch = uuid.uuid4().hex[:16]
    sent = newer_agent_events(epoch)
    newer = MqttAttacker(p.mqtt_url)
    try:
        topic = f"{p.prefix}/{NEWER}/events"
        for obj in sent[:EVENTS // 2]:  # single events: forwarded verbatim by the bridge
            newer.publish(topic, orjson.dumps(obj))
        newer.publish(topic, orjson.dumps(sent[EVENTS // 2:]))  # one batch: re-encoded item by item
        wait_for(lambda: newer.acked == newer.published, 30, "the broker's PUBACKs")
        assert newer.refused == 0
    finally:
        newer.close()

    wait_for(lambda: p.committed("schema-today") == EVENTS, 60, "the agent of today committing its events")
    expected: set[Key] = p.expected("schema-today") | {(NEWER, epoch, seq) for seq in range(1, EVENTS + 1)}
    devices = {"schema-today", NEWER}
    values: list[bytes] = []

    def arrived() -> bool:
        nonlocal values
        values = read_topic(p.bootstrap, p.topics.processed, idle=1.0)
        return expected <= set(counts(values, devices))

    try:
        wait_for(arrived, 120, "both agents' events in iot.events.processed", every=1.0)
    except AssertionError:
        missing = sorted(expected - set(counts(values, devices)))
        raw = counts(read_topic(p.bootstrap, p.topics.raw, idle=1.0), devices)
        dead = read_topic(p.bootstrap, p.topics.deadletter, idle=1.0)
        raise AssertionError(f"{len(missing)} missing from processed, first {missing[:5]}; raw holds "
                             f"{len(raw)} of them, {len(dead)} dead letters; logs in {p.workdir}") from None
    seen = counts(values, devices)
    assert set(seen) == expected and max(seen.values()) == 1, "a duplicate or a stranger in processed"

    by_seq = {e["seq"]: e for e in map(orjson.loads, values) if e["deviceid"] == NEWER}
    for obj in sent:
        got = by_seq[obj["seq"]]
        if obj["type"] == VIBRATION:  # not enriched: on as it came
            assert got == obj
        else:  # enriched, and what the enricher does not know is still there
            assert got["type"] == PROCESSED_TYPE
            assert (got["firmware"], got["subject"]) == ("2.0.1", "pump-housing")
            assert got["data"]["readings"]["temperature"]["v"] == obj["data"]["temperature"]["v"]

    alerts = [orjson.loads(v) for v in read_topic(p.bootstrap, p.topics.alerts, idle=1.0)]
    assert not [a for a in alerts if a["deviceid"] in devices and a["kind"] == "gap_opened"], alerts
    dead = read_topic(p.bootstrap, p.topics.deadletter, idle=1.0)
    assert not dead, f"{len(dead)} dead letters, first {dead[:1]!r}"
