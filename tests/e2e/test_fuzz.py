"""Guarantee 5 under fuzzing: hostile input never stops the stream (issue 9, "Fuzzing as a suite").

10,000+ hostile MQTT payloads (:mod:`simulators.hostile`, seeded) go through the real Mosquitto on the
events topics of a few attacker devices (and a few topics whose device level is no device id), while a
real agent publishes good events beside them through the same bridge; as many hostile records are
produced straight into the pipeline's raw topic. Then, each from an independent read:

- the bridge and the enricher never restarted (same pids, still running, started once);
- every hostile MQTT message is accounted for, message by message: refused whole (one dead letter of
  the bridge, its value the payload, matched by ``dlq_mqtt_topic`` and value), or, item by item, each
  item either a bridge dead letter of that index or an event in the raw topic (matched by topic and
  content); nothing of the bridge is left over that no message explains;
- every record of the raw topic (the bridge's and the injected ones) is a dead letter of the enricher
  (``dlq_original_partition``/``offset``, value unchanged or cut with ``dlq_truncated``), or an event
  whose (device, epoch, seq) is in ``iot.events.processed``; and processed holds each (device, epoch,
  seq) exactly once, nothing else, and no reading or derived value without its value (``null``);
- every event the good agent committed is processed exactly once; no message of it is a dead letter;
- every dead letter has the one header schema; none says ``internal_error`` or ``step_failed`` (those
  mean an input no check foresaw: a bug to fix, even though the stream survived it).

Matching by message rather than counting per device: a count can balance a lost dead letter against a
duplicate, a match cannot. Identical messages on one topic have identical outcomes, so they share a
pool of matches; a redelivery (none without a reconnect) would show as a leftover.

``EDGEBRIDGE_FUZZ_SEED`` picks another seed; ``-s`` prints the figures.
"""

from __future__ import annotations

import contextlib
import os
import reprlib
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Producer

from bridge.config import UplinkConfig
from bridge.validate import Translator
from edgebridge import deadletters
from edgebridge.topics import KafkaTopics
from simulators.audit import KafkaRecord, read_records
from simulators.hostile import NESTED_BATCH, Hostile, Payload, RawRecord
from tests.e2e.conftest import Pipeline, wait_for

SEED = int(os.environ.get("EDGEBRIDGE_FUZZ_SEED", "20240610"))
MQTT_PAYLOADS = 10_000
RAW_RECORDS = 10_000
GOOD = "fz-good"
GOOD_EVENTS = 3000
ATTACKERS = [f"fz-atk-{i}" for i in range(4)]
BAD_TOPIC_LEVELS = ["..", "bad id", "x" * 200]  # device levels that are no device id: bad_topic
RAW_DEVICES = [f"fz-raw-{i}" for i in range(4)]
KEYLESS = ["fz-nokey-0", "fz-nokey-1"]
DEADLETTER_PAYLOAD = UplinkConfig().max_deadletter_payload  # the bridge's cut, 64 KiB
REQUIRED_HEADERS = {"dlq_reason", "dlq_error_class", "dlq_error", "dlq_component", "dlq_time"}

Key = tuple[str, str, int]
SHORT = reprlib.Repr()  # repr() of an item nested 1,000 deep fails; this one stops at 3 levels
SHORT.maxlevel, SHORT.maxstring, SHORT.maxother = 3, 60, 60


# --- injecting ---------------------------------------------------------------------------------------------


class MqttAttacker:
    """An independent MQTT 5 client: QoS 1, up to 500 publishes in flight, PUBACKs counted."""

    def __init__(self, url: str) -> None:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fz-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)  # no limit: every publish is queued, paho pipelines them
        self.client.on_publish = self._on_publish
        self.published = self.acked = self.refused = 0
        self.client.connect(host, int(port))
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self.acked += 1
        if reason.is_failure:
            self.refused += 1

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        self.published += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def produce_raw(bootstrap: str, topic: str, records: list[RawRecord]) -> list[tuple[int, int] | str]:
    """Produce ``records`` as they are (an idempotent producer: order kept per partition); each one's
    (partition, offset) from its delivery report, or the error's text."""
    outcome: list[tuple[int, int] | str] = ["not delivered"] * len(records)

    def report(i: int) -> Callable[[Any, Any], None]:
        def done(err: Any, msg: Any) -> None:
            outcome[i] = str(err) if err is not None else (msg.partition(), msg.offset())
        return done

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for i, r in enumerate(records):
        while True:
            try:
                producer.produce(topic, value=r.value, key=r.key, headers=r.headers, partition=r.partition,
                                 on_delivery=report(i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    return outcome


# --- judging -----------------------------------------------------------------------------------------------


def headers(record: KafkaRecord) -> dict[str, bytes]:
    return {name: value or b"" for name, value in record.headers}


def event_key(value: bytes | None) -> Key | None:
    """(device, epoch, seq) of an event's JSON, ``None`` for anything else."""
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    device, epoch, seq = obj.get("deviceid"), obj.get("epoch") or "", obj.get("seq")
    if isinstance(device, str) and isinstance(epoch, str) and type(seq) is int:
        return device, epoch, seq
    return None


def canonical(obj: object) -> bytes | None:
    """An event object as comparable bytes: keys sorted, null attributes dropped (read as absent)."""
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if v is not None}
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return None


def cut(value: bytes) -> tuple[bytes, bytes]:
    """What a bridge dead letter of ``value`` holds: the value cut, and its ``dlq_truncated`` header."""
    if len(value) > DEADLETTER_PAYLOAD:
        return value[:DEADLETTER_PAYLOAD], str(len(value)).encode()
    return value, b""


@dataclass
class BridgeVerdict:
    refused_whole: Counter[str] = field(default_factory=Counter)  # by reason
    refused_items: Counter[str] = field(default_factory=Counter)  # by reason
    valid_events: int = 0  # events of the hostile messages in the raw topic
    unaccounted: list[str] = field(default_factory=list)
    leftover: list[str] = field(default_factory=list)


def judge_bridge(
    messages: list[tuple[str, bytes]], dead: list[KafkaRecord], raw: list[KafkaRecord]
) -> BridgeVerdict:
    """Match each message (topic, payload) with what the bridge wrote for it (see the module docstring)."""
    verdict = BridgeVerdict()
    topics = {topic for topic, _ in messages}
    # a dead letter's value is cut at DEADLETTER_PAYLOAD (its original size in dlq_truncated): both match
    whole: dict[tuple[str, bytes, bytes], list[KafkaRecord]] = defaultdict(list)
    items: dict[tuple[str, int, bytes, bytes], list[KafkaRecord]] = defaultdict(list)
    for record in dead:
        h = headers(record)
        topic = h.get("dlq_mqtt_topic", b"").decode("utf-8", "replace")
        if h.get("dlq_component") != b"bridge" or topic not in topics:
            continue
        value, truncated = record.value or b"", h.get("dlq_truncated", b"")
        if "dlq_index" in h:
            items[(topic, int(h["dlq_index"]), value, truncated)].append(record)
        else:
            whole[(topic, value, truncated)].append(record)
    events: Counter[tuple[str, bytes | None]] = Counter()
    for record in raw:
        topic = headers(record).get("mqtt_topic", b"").decode("utf-8", "replace")
        if topic in topics:
            events[(topic, canonical(orjson.loads(record.value or b"")))] += 1

    def take_item(topic: str, index: int, item: object, payload: bytes) -> bool:
        try:
            own: bytes | None = orjson.dumps(item)  # as the bridge re-encodes a refused item
        except (orjson.JSONEncodeError, TypeError):
            own = None  # nested past what orjson writes: the bridge keeps the whole message
        for value in (own, payload):  # the item, or the whole message (an item with a duplicate key)
            if value is None:
                continue
            pool = items.get((topic, index, *cut(value)))
            if pool:
                verdict.refused_items[headers(pool.pop()).get("dlq_reason", b"?").decode()] += 1
                return True
        return False

    def take_event(topic: str, obj: object) -> bool:
        key = (topic, canonical(obj))
        if key[1] is not None and events[key] > 0:
            events[key] -= 1
            verdict.valid_events += 1
            return True
        return False

    for n, (topic, payload) in enumerate(messages):
        pool = whole.get((topic, *cut(payload)))
        if pool:
            h = headers(pool.pop())
            verdict.refused_whole[h.get("dlq_reason", b"?").decode()] += 1
            continue
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            verdict.unaccounted.append(f"#{n} on {topic}: not JSON and no dead letter: {payload[:80]!r}")
            continue
        if parsed == []:  # an empty batch has no item to account for it: only its dead letter can
            verdict.unaccounted.append(f"#{n} on {topic}: an empty batch and no dead letter")
        elif isinstance(parsed, list):
            for i, item in enumerate(parsed):
                if not (take_item(topic, i, item, payload) or take_event(topic, item)):
                    verdict.unaccounted.append(f"#{n} on {topic}, item {i}: {SHORT.repr(item)}")
        elif not take_event(topic, parsed):
            verdict.unaccounted.append(f"#{n} on {topic}: no event, no dead letter: {payload[:80]!r}")
    verdict.leftover += [f"dead letter {k[0]} {k[1][:60]!r}" for k, v in whole.items() for _ in v]
    verdict.leftover += [f"dead letter {k[0]}[{k[1]}] {k[2][:60]!r}" for k, v in items.items() for _ in v]
    verdict.leftover += [f"raw event {k[0]} {k[1]!r:.80}" for k, v in events.items() for _ in range(v)]
    return verdict


@dataclass
class EnricherVerdict:
    deadlettered: Counter[str] = field(default_factory=Counter)  # by reason
    accepted: int = 0  # raw records taken as events (duplicates of a key included)
    injected: Counter[str] = field(default_factory=Counter)  # the injected records: "accepted", "refused"
    problems: list[str] = field(default_factory=list)


def judge_enricher(
    raw_topic: str, raw: list[KafkaRecord], dead: list[KafkaRecord], processed: Counter[Key],
    injected: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
) -> EnricherVerdict:
    """Every raw record is a dead letter of the enricher or a processed (device, epoch, seq); processed
    holds each key once and only keys of accepted raw records."""
    verdict = EnricherVerdict()
    letters: dict[tuple[int, int], KafkaRecord] = {}
    for record in dead:
        h = headers(record)
        if h.get("dlq_component") != b"enricher":
            continue
        where = (int(h["dlq_original_partition"]), int(h["dlq_original_offset"]))
        if h.get("dlq_original_topic") != raw_topic.encode() or where in letters:
            verdict.problems.append(f"enricher dead letter of {h.get('dlq_original_topic')!r} {where}: "
                                    "another topic, or twice")
        letters[where] = record
    keys: set[Key] = set()
    for record in raw:
        letter = letters.pop((record.partition, record.offset), None)
        if letter is not None:
            value, original = letter.value or b"", record.value or b""
            cut_to_fit = headers(letter).get("dlq_truncated") == str(len(original)).encode()
            if value != original and not (cut_to_fit and original.startswith(value)):
                verdict.problems.append(f"dead letter of {record.partition}:{record.offset}: not its value")
            verdict.deadlettered[headers(letter)["dlq_reason"].decode()] += 1
            if (record.partition, record.offset) in injected:
                verdict.injected["refused"] += 1
            continue
        key = event_key(record.value)
        if key is None:
            verdict.problems.append(f"raw {record.partition}:{record.offset} neither processed nor a dead "
                                    f"letter: {(record.value or b'')[:80]!r}")
            continue
        keys.add(key)
        verdict.accepted += 1
        if (record.partition, record.offset) in injected:
            verdict.injected["accepted"] += 1
    verdict.problems += [f"enricher dead letter of a raw record not read: {where}" for where in letters]
    twice = [k for k, n in processed.items() if n > 1]
    verdict.problems += [f"processed {n} times: {k}" for k, n in processed.items() if n > 1][:20]
    if twice:
        verdict.problems.append(f"{len(twice)} keys processed more than once")
    missing, extra = sorted(keys - set(processed)), sorted(set(processed) - keys)
    if missing:
        verdict.problems.append(f"{len(missing)} accepted raw events not processed, first {missing[:5]}")
    if extra:
        verdict.problems.append(f"{len(extra)} processed keys without a raw record, first {extra[:5]}")
    return verdict


def schema_problems(dead: Iterable[KafkaRecord]) -> list[str]:
    """Dead letters outside the one header schema (docs/deadletters.md)."""
    problems = []
    for record in dead:
        h = headers(record)
        if not h.keys() >= REQUIRED_HEADERS or not h.keys() <= set(deadletters.HEADERS):
            problems.append(f"headers {sorted(h)}")
        elif h["dlq_reason"].decode() not in deadletters.REASONS:
            problems.append(f"reason {h['dlq_reason']!r}")
    return problems[:20]


@dataclass
class Judgement:
    """One independent read of the three topics, and the verdicts on it."""

    dead: list[KafkaRecord]
    outputs: list[KafkaRecord]  # iot.events.processed
    processed: Counter[Key]
    bridge: BridgeVerdict
    enricher: EnricherVerdict

    @classmethod
    def read(cls, p: Pipeline, messages: list[tuple[str, bytes]], injected: set[tuple[int, int]]
             ) -> Judgement:
        dead = read_records(p.bootstrap, p.topics.deadletter, idle=2.0)
        raw = read_records(p.bootstrap, p.topics.raw, idle=2.0)
        outputs = read_records(p.bootstrap, p.topics.processed, idle=2.0)
        processed = Counter(filter(None, (event_key(r.value) for r in outputs)))
        from_bridge = [r for r in raw if (r.partition, r.offset) not in injected]
        return cls(dead, outputs, processed, judge_bridge(messages, dead, from_bridge),
                   judge_enricher(p.topics.raw, raw, dead, processed, injected))

    def nulls(self) -> list[str]:
        """Processed readings or derived values without a value (orjson writes inf and NaN as null)."""
        out = []
        for record in self.outputs:
            data = orjson.loads(record.value or b"")["data"]
            values = {**data.get("readings", {}), **data.get("derived", {})}
            out += [f"{record.partition}:{record.offset} {name}: {value}" for name, value in values.items()
                    if value.get("v") is None]
        return out

    def complete(self, expected: set[Key]) -> bool:
        return not self.bridge.unaccounted and not self.enricher.problems and expected <= set(self.processed)

    def reasons(self, component: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for record in self.dead:
            h = headers(record)
            if h.get("dlq_component") == component.encode():
                out[h.get("dlq_reason", b"?").decode()] += 1
        return out


# --- the tests ---------------------------------------------------------------------------------------------


def test_the_judge_accounts_for_what_the_bridge_writes_and_sees_a_record_lost_or_added() -> None:
    """The oracle of the suite, checked against the bridge's own translation (in process, no broker):
    what the Translator makes of 1,000 hostile messages is all accounted for, nothing left over; one
    record less is a message unaccounted for, one more is a leftover."""
    translator = Translator("fz", UplinkConfig(), KafkaTopics(raw="raw", deadletter="dlq"))
    messages = [(f"fz/{m.device}/events", m.value) for m in Hostile(SEED, ATTACKERS[:2]).mqtt(1000)]
    dead: list[KafkaRecord] = []
    raw: list[KafkaRecord] = []
    for topic, payload in messages:
        for r in translator.records(topic, payload, time.time()):
            out = raw if r.kind == "event" else dead
            out.append(KafkaRecord(0, len(out), r.key, r.value, [
                (name, value.encode() if isinstance(value, str) else value) for name, value in r.headers]))
    verdict = judge_bridge(messages, dead, raw)
    assert not verdict.unaccounted and not verdict.leftover
    assert verdict.valid_events and verdict.refused_whole and verdict.refused_items
    whole = next(d for d in dead if "dlq_index" not in headers(d))
    item = next(d for d in dead if "dlq_index" in headers(d))
    for lost in (whole, item, raw[len(raw) // 2]):
        kept = [d for d in dead if d is not lost], [r for r in raw if r is not lost]
        assert len(judge_bridge(messages, *kept).unaccounted) == 1
    assert len(judge_bridge(messages, [*dead, item], raw).leftover) == 1
    assert len(judge_bridge(messages, dead, [*raw, raw[0]]).leftover) == 1
    empty = [m for m in messages if m[1] == b"[]"]  # no item to account for it: only its dead letter can
    kept = [d for d in dead if d.value != b"[]" or "dlq_index" in headers(d)], raw
    assert empty and len(judge_bridge(messages, *kept).unaccounted) == len(empty)


def test_the_enricher_judge_sees_a_record_neither_processed_nor_dead_lettered() -> None:
    def event(seq: int) -> bytes:
        return orjson.dumps({"deviceid": "d", "epoch": "e", "seq": seq})

    def letter(offset: int, value: bytes) -> KafkaRecord:
        return KafkaRecord(0, 0, None, value, [
            ("dlq_component", b"enricher"), ("dlq_reason", b"not_json"), ("dlq_original_topic", b"raw"),
            ("dlq_original_partition", b"0"), ("dlq_original_offset", str(offset).encode())])

    raw = [KafkaRecord(0, i, b"d", v, []) for i, v in enumerate([event(1), b"junk", event(1), event(2)])]
    dead = [letter(1, b"junk")]
    processed = Counter({("d", "e", 1): 1, ("d", "e", 2): 1})
    assert not judge_enricher("raw", raw, dead, processed).problems
    assert judge_enricher("raw", raw, [], processed).problems  # junk neither processed nor dead-lettered
    assert judge_enricher("raw", raw, [letter(1, b"junk!")], processed).problems  # another value
    assert judge_enricher("raw", raw, [*dead, letter(1, b"junk")], processed).problems  # twice
    assert judge_enricher("raw", raw, dead, processed + Counter({("d", "e", 2): 1})).problems  # twice
    assert judge_enricher("raw", raw, dead, Counter({("d", "e", 1): 1})).problems  # one not processed
    assert judge_enricher("raw", raw, dead, processed + Counter({("d", "e", 3): 1})).problems  # from nowhere


@pytest.mark.brokers
def test_hostile_input_never_stops_the_stream(pipeline: Callable[..., Pipeline]) -> None:
    began = time.monotonic()
    payloads: list[Payload] = Hostile(SEED, ATTACKERS, others=[GOOD, "fz-victim"]).mqtt(MQTT_PAYLOADS)
    payloads += [Payload(level, m.value, "bad_topic") for level in BAD_TOPIC_LEVELS for m in payloads[-10:]]
    records = Hostile(SEED + 1, RAW_DEVICES, others=["fz-victim", RAW_DEVICES[0]]).raw(
        RAW_RECORDS, partitions=2, keyless=KEYLESS)
    generated = time.monotonic() - began

    p = pipeline()
    enricher = p.start_enricher()
    bridge = p.bridge().start()
    assert bridge.wait_healthy(30), f"bridge not healthy; see {bridge.log_path}"
    assert bridge.proc is not None and enricher.proc is not None
    pids = (bridge.proc.pid, enricher.proc.pid)
    p.agent(GOOD, events=GOOD_EVENTS, rate=300).start()
    wait_for(lambda: p.committed(GOOD) >= 300, 30, "the good agent running")

    # -- inject, beside the agent: the raw records on a thread, the MQTT payloads on this one
    injecting = time.monotonic()
    outcome: list[tuple[int, int] | str] = []
    producer = threading.Thread(target=lambda: outcome.extend(produce_raw(p.bootstrap, p.topics.raw,
                                                                          records)))
    producer.start()
    messages = [(f"{p.prefix}/{m.device}/events", m.value) for m in payloads]
    attacker = MqttAttacker(p.mqtt_url)
    try:
        for topic, payload in messages:
            attacker.publish(topic, payload)
        wait_for(lambda: attacker.acked >= attacker.published, 120, "every PUBACK", every=0.1)
    finally:
        attacker.close()
    producer.join(120)
    injection = time.monotonic() - injecting
    # the fault was injected: every payload published and PUBACKed, every record in Kafka
    assert (attacker.published, attacker.acked, attacker.refused) == (len(messages), len(messages), 0)
    injected = {o for o in outcome if isinstance(o, tuple)}
    assert len(injected) == len(records), [o for o in outcome if not isinstance(o, tuple)][:5]

    # -- judge, from independent reads, until everything is accounted for (or the time is up)
    wait_for(lambda: p.committed(GOOD) >= GOOD_EVENTS, 60, "every good event committed")
    expected = p.expected(GOOD)
    last: list[Judgement] = []

    def complete() -> bool:
        last[:] = [Judgement.read(p, messages, injected)]
        return not (bridge.running and enricher.running) or last[0].complete(expected)

    with contextlib.suppress(AssertionError):  # the verdicts below say what is missing
        wait_for(complete, 150, "every hostile input accounted for", every=2.0)
    wall = time.monotonic() - began
    j = last[0]
    b, e = j.bridge, j.enricher
    print(f"\nfuzz seed {SEED}: {len(messages)} MQTT payloads "
          f"({dict(Counter(m.kind.split(':')[0] for m in payloads))}), "
          f"{sum(len(m.value) for m in payloads) / 1e6:.1f} MB; published {attacker.published}, "
          f"PUBACKed {attacker.acked}; {len(records)} raw records, delivered {len(injected)}\n"
          f"bridge: {sum(b.refused_whole.values())} messages refused whole, {sum(b.refused_items.values())} "
          f"batch items refused, {b.valid_events} valid events; dead letters {dict(j.reasons('bridge'))}\n"
          f"enricher: {e.accepted} raw records taken as events; of the injected ones "
          f"{e.injected['accepted']} taken, {e.injected['refused']} refused; dead letters "
          f"{dict(j.reasons('enricher'))}\n"
          f"processed: {len(j.processed)} keys, {sum(j.processed.values())} records; good agent "
          f"{len(expected)} events\n"
          f"wall {wall:.1f} s (generation {generated:.1f} s, injection {injection:.1f} s); "
          f"bridge pid {pids[0]}, enricher pid {pids[1]}")

    # -- the verdicts
    assert bridge.running and enricher.running
    assert (bridge.proc.pid, enricher.proc.pid) == pids and (bridge.starts, enricher.starts) == (1, 1)
    assert not b.unaccounted, f"{len(b.unaccounted)} hostile messages unaccounted for: {b.unaccounted[:10]}"
    redelivered = bridge.metric("edgebridge_bridge_redelivered_messages_total")
    assert not b.leftover or redelivered, f"bridge output no message explains: {b.leftover[:10]}"
    assert not e.problems, e.problems[:10]
    missing = expected - set(j.processed)
    assert not missing, f"{len(missing)} good events not processed, first {sorted(missing)[:5]}"
    assert max(j.processed[k] for k in expected) == 1
    # issue 9's message: by the bridge, item 0 refused (not re-encodable: the message kept); by the
    # enricher, the record is no event
    nested = sorted((h["dlq_component"], h["dlq_reason"], h.get("dlq_index", b"-"))
                    for r in j.dead if r.value == NESTED_BATCH for h in [headers(r)])
    assert nested == [(b"bridge", b"not_object", b"0"), (b"enricher", b"not_object", b"-")], nested
    good_topic = f"{p.prefix}/{GOOD}/events".encode()
    assert not [r for r in j.dead if headers(r).get("dlq_mqtt_topic") == good_topic]
    assert not schema_problems(j.dead), schema_problems(j.dead)
    unforeseen = Counter((h["dlq_component"], h["dlq_reason"], h.get("dlq_step"), h["dlq_error_class"],
                          h["dlq_error"][:60]) for h in map(headers, j.dead)
                         if h.get("dlq_reason") in (b"internal_error", b"step_failed"))
    assert not unforeseen, f"inputs no check foresaw: {unforeseen.most_common(10)}; logs in {p.workdir}"
    nulls = j.nulls()
    assert not nulls, f"{len(nulls)} processed values lost (null), first {nulls[:5]}"
    assert sum(b.refused_whole.values()) + sum(b.refused_items.values()) > len(messages) // 2
    assert b.valid_events > 0 and e.accepted > 0  # some hostile input is valid, and processed
