"""The enricher against the real Kafka: exactly once with enrichment, registry updates, dead letters."""

from __future__ import annotations

import random
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edgebridge.envelope import new_gap, new_reading
from edgebridge.topics import KafkaTopics
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import InProcess, enricher_config, produce, read_all, values, write_toml

pytestmark = pytest.mark.brokers


def _reading(device: str, seq: int, temp_f: float = 68.0) -> object:
    return new_reading(device, seq, {"temperature": {"v": temp_f, "u": "degF"},
                                     "humidity": {"v": 50, "u": "%RH"}})


def test_duplicates_and_reordering_come_out_exactly_once_enriched(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str]
) -> None:
    topics = make_topics(3)
    bs = brokers.kafka_bootstrap
    produce(bs, topics.devices, [("dev-0", orjson.dumps({
        "site": "plant-a", "location": "hall 2",
        "calibration": {"temperature": {"offset": 1.8, "scale": 1.0}},
        "thresholds": {"temperature": {"max": 30.0}}}))])
    rng = random.Random(7)
    devices, per_device = 6, 60
    events = {(f"dev-{d}", s): _reading(f"dev-{d}", s)
              for d in range(devices) for s in range(1, per_device + 1)}
    records = list(events.items())
    dups = rng.sample(records, 90)  # resends of a lost PUBACK
    stream = records + dups
    rng.shuffle(stream)  # reordering within each device, too
    produce(bs, topics.raw, [(dev, ev) for (dev, _), ev in stream])  # type: ignore[misc]
    config = enricher_config(brokers, topics, consumer_group())
    total = devices * per_device
    with InProcess(config) as run:
        out = read_all(bs, topics.processed, total, timeout=60)
    assert run.error is None
    got = values(read_all(bs, topics.processed))
    assert len(got) == total
    assert Counter((e["deviceid"], e["seq"]) for e in got) == Counter(events.keys())
    assert len(out) == total
    assert all(e["type"] == "edgebridge.reading.processed.v1" for e in got)
    d0 = [e for e in got if e["deviceid"] == "dev-0"]
    # calibration in the raw unit (68 + 1.8 degF), then degF -> Cel: 21 Cel
    assert {round(e["data"]["readings"]["temperature"]["v"], 6) for e in d0} == {21.0}
    assert {e["data"]["readings"]["temperature"]["u"] for e in got} == {"Cel"}
    assert {e["data"]["device"].get("site") for e in d0} == {"plant-a"}
    assert all(e["data"]["derived"]["dew_point"]["u"] == "Cel" for e in got)
    assert round(d0[0]["data"]["derived"]["dew_point"]["v"], 1) == 10.2  # 21 Cel at 50 %RH
    late = sum(e["data"]["late"] for e in got)
    assert late == sum("late" in e["data"]["flags"] for e in got) and late > 0
    m = run.processor.metrics
    assert m.duplicates._value.get() == 90
    assert m.late._value.get() == late
    assert m.deadletters.labels("x")._value.get() == 0
    assert m.open_gaps._value.get() == 0  # every hole was filled by its late event


def test_registry_update_applies_to_the_next_events_without_restart(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str]
) -> None:
    topics = make_topics(1)
    bs = brokers.kafka_bootstrap
    produce(bs, topics.devices, [("dev-r", orjson.dumps({"site": "old"}))])
    with InProcess(enricher_config(brokers, topics, consumer_group())) as run:
        produce(bs, topics.raw, [("dev-r", _reading("dev-r", s)) for s in (1, 2, 3)])
        assert len(read_all(bs, topics.processed, 3)) == 3
        produce(bs, topics.devices, [("dev-r", orjson.dumps({
            "site": "new", "calibration": {"temperature": {"offset": 9.0, "scale": 1.0}}}))])
        reg = run.processor.registry
        deadline_ok = _wait(lambda: (reg.get("dev-r") or None) and reg.get("dev-r").site == "new")  # type: ignore[union-attr]
        assert deadline_ok
        produce(bs, topics.raw, [("dev-r", _reading("dev-r", s)) for s in (4, 5)])
        got = sorted(values(read_all(bs, topics.processed, 5)), key=lambda e: e["seq"])
    assert [e["seq"] for e in got] == [1, 2, 3, 4, 5]
    assert [e["data"]["device"]["site"] for e in got] == ["old"] * 3 + ["new"] * 2
    assert [round(e["data"]["readings"]["temperature"]["v"], 6) for e in got] == [20.0] * 3 + [25.0] * 2


def _wait(predicate: Callable[[], object], timeout: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def wrong_return(item: object, ctx: object) -> object:
    """A user step with a bug: for seq 7 it returns something that is not an Item (no ``.event``)."""
    if getattr(item, "event").seq == 7:  # noqa: B009
        return "not an item"
    return item


def boom(item: object, ctx: object) -> object:
    """A user step (loaded by module:callable) that fails on seq 13."""
    if getattr(item, "event").seq == 13:  # noqa: B009
        raise ValueError("thirteen is unlucky")
    return item


def test_poison_events_go_to_dead_letters_with_headers_and_the_rest_flows(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str]
) -> None:
    topics = make_topics(1)
    bs = brokers.kafka_bootstrap
    good = [("dev-p", _reading("dev-p", s)) for s in range(1, 21)]
    poison = [
        ("dev-p", b"\xff\xfe not json"),
        ("dev-p", orjson.dumps({"specversion": "1.0", "id": "x", "source": "/devices/dev-p",
                                "type": "edgebridge.reading.v1", "time": "2024-01-01T00:00:00Z",
                                "deviceid": "dev-p", "seq": 0, "data": {}})),
        ("dev-q", _reading("dev-p", 99)),  # key says another device: spoofing
    ]
    stream = good[:5] + poison[:2] + good[5:15] + poison[2:] + good[15:]
    gap = ("dev-p", new_gap("dev-p", 30, 21, 29, "evicted"))
    # valid in, not encodable out: 2**62 kWh is 2**62 * 3.6e6 J, past JSON's 64-bit integers
    huge = ("dev-p", new_reading("dev-p", 31, {"energy": {"v": 2**62, "u": "kWh"}}))
    produce(bs, topics.raw, [*stream, gap, huge])  # type: ignore[list-item]
    steps = ["validate", "dedup", "calibrate", "normalise", "tests.enricher.test_processing:boom", "derive"]
    config = enricher_config(brokers, topics, consumer_group(), **{"pipeline.steps": steps})
    with InProcess(config) as run:
        processed = read_all(bs, topics.processed, 20)
        dead = read_all(bs, topics.deadletter, 5)
    got = values(processed)
    assert sorted(e["seq"] for e in got) == [s for s in range(1, 21) if s != 13] + [30]
    assert [e["type"] for e in got if e["seq"] == 30] == ["edgebridge.gap.v1"]
    headers = [dict((k, v.decode()) for k, v in m.headers()) for m in dead]
    assert [h["dlq_reason"] for h in headers] == ["not_json", "bad_seq", "step_failed", "device_mismatch",
                                                  "unencodable"]
    assert [int(h["dlq_original_offset"]) for h in headers] == [5, 6, 14, 17, 24]
    assert {h["dlq_original_topic"] for h in headers} == {topics.raw}
    assert {h["dlq_original_partition"] for h in headers} == {"0"}
    assert {h["dlq_component"] for h in headers} == {"enricher"}
    assert {h["dlq_instance"] for h in headers} == {config.instance_id}
    assert headers[2]["dlq_error_class"] == "ValueError" and headers[2]["dlq_error"] == "thirteen is unlucky"
    assert headers[2]["dlq_step"] == "tests.enricher.test_processing:boom"
    assert headers[0]["dlq_error_class"] == "EnvelopeError"
    assert all(h["dlq_time"].endswith("Z") for h in headers)
    assert dead[0].value() == b"\xff\xfe not json"
    m = run.processor.metrics
    assert m.deadletters.labels("step_failed")._value.get() == 1
    assert m.deadletters.labels("unencodable")._value.get() == 1
    assert m.gaps_opened._value.get() == 1 and m.gaps_explained._value.get() == 1
    assert m.open_gaps._value.get() == 0


def test_an_unexpected_exception_costs_one_record_not_the_partition(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str]
) -> None:
    """Not an EnvelopeError, Reject or StepFailed: the processor's own code fails on what a step
    returned. That record is dead-lettered as internal_error; the records after it are processed."""
    topics = make_topics(1)
    bs = brokers.kafka_bootstrap
    produce(bs, topics.raw, [("dev-w", _reading("dev-w", s)) for s in range(1, 11)])  # type: ignore[misc]
    steps = ["validate", "dedup", "derive", "tests.enricher.test_processing:wrong_return"]  # the last step
    config = enricher_config(brokers, topics, consumer_group(), **{"pipeline.steps": steps})
    with InProcess(config) as run:
        processed = read_all(bs, topics.processed, 9)
        dead = read_all(bs, topics.deadletter, 1)
        assert run.thread.is_alive() and run.error is None
    assert sorted(e["seq"] for e in values(processed)) == [s for s in range(1, 11) if s != 7]
    [letter] = dead
    h = {k: v.decode() for k, v in letter.headers()}
    assert (h["dlq_reason"], h["dlq_error_class"], h["dlq_original_offset"]) == (
        "internal_error", "AttributeError", "6")
    assert run.processor.metrics.deadletters.labels("internal_error")._value.get() == 1


def _hostile_raw_records() -> list[tuple[bytes, str]]:
    """Records a producer other than the bridge could write into iot.events.raw, with their reason."""
    good = orjson.dumps(_reading_dict("dev-h", 1))

    def with_seq(text: bytes) -> bytes:
        return good.replace(b'"seq":1', b'"seq":' + text)

    return [
        (b"[" * 300 + b"]" * 300, "not_object"),  # the nesting, as a record of its own
        (with_seq(b"[" * 1000 + b"]" * 1000), "bad_seq"),  # its error detail used to raise RecursionError
        (b"[" * 1025 + b"]" * 1025, "too_deep"),
        (with_seq(b"1,\"seq\":2"), "duplicate_key"),
        (good.replace(b'"u":"Cel"', b'"u":"Cel","u":"Cel"', 1), "duplicate_key"),
        (orjson.dumps(_reading_dict("dev-h", 1, "a\x00b")), "bad_data"),  # NUL: jsonb would refuse it
        (with_seq(b"1e400"), "not_json"),
        (good.replace(b"dev-h", b"dev-\xff"), "not_json"),
        (b"", "not_json"),
        (good.replace(b'"data":{', b'"pad":"' + b"x" * 300_000 + b'","data":{'), "oversized"),
        # the enricher's own output type is not one it takes from raw (its free-form data, nested past
        # 32 levels here, is never walked): tests/test_envelope_hostile.py has the depth rule itself
        (orjson.dumps({**_reading_dict("dev-h", 1), "type": "edgebridge.reading.processed.v1",
                       "data": {"x": orjson.loads(b"[" * 40 + b"]" * 40)}}), "unknown_type"),
    ]


def _reading_dict(device: str, seq: int, text: str | None = None) -> dict[str, object]:
    data: dict[str, object] = {"temperature": {"v": 20.5, "u": "Cel"}}
    if text is not None:
        data["label"] = {"v": text}
    return {"specversion": "1.0", "id": f"{device}-{seq}", "source": f"/devices/{device}",
            "type": "edgebridge.reading.v1", "time": "2024-05-01T12:00:00.000Z", "deviceid": device,
            "seq": seq, "data": data}


def test_hostile_raw_records_are_dead_lettered_and_the_enricher_process_stays_up(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    spawn_enricher: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    topics = make_topics(1)
    bs = brokers.kafka_bootstrap
    hostile = _hostile_raw_records()
    stream: list[tuple[str | None, object]] = []
    for seq in range(1, 31):
        stream.append(("dev-h", _reading("dev-h", seq)))
        if seq <= len(hostile):
            stream.append(("dev-h", hostile[seq - 1][0]))
    produce(bs, topics.raw, stream)  # type: ignore[arg-type]
    conf = write_toml(tmp_path / "enricher.toml", enricher_config(brokers, topics, consumer_group()))
    proc = spawn_enricher(conf)
    processed = read_all(bs, topics.processed, 30, timeout=90)
    dead = read_all(bs, topics.deadletter, len(hostile), timeout=60)
    assert proc.poll() is None, (tmp_path / "enricher-0.log").read_text()[-3000:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert sorted(e["seq"] for e in values(processed)) == list(range(1, 31))  # each good one, once
    headers = [{k: v.decode() for k, v in m.headers()} for m in dead]
    assert [h["dlq_reason"] for h in headers] == [reason for _, reason in hostile]
    assert [m.value() for m in dead] == [value for value, _ in hostile]
    assert [int(h["dlq_original_offset"]) for h in headers] == [2 * i + 1 for i in range(len(hostile))]
    assert "Traceback" not in (tmp_path / "enricher-0.log").read_text()


def test_a_raw_record_at_kafkas_size_limit_is_dead_lettered_cut_not_replayed_forever(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str]
) -> None:
    """Found by tests/e2e/test_fuzz.py: a raw record as large as a default producer sends (1,000,000
    bytes) left no room for the dead letter's headers; its produce failed, the transaction aborted and
    the record came back, 600 aborts in 2.5 minutes, its partition stalled. Now its value is cut to
    fit, ``dlq_truncated`` says so, and the records after it flow."""
    topics = make_topics(1)
    bs = brokers.kafka_bootstrap
    key = "dev-big"
    big = orjson.dumps(_reading_dict(key, 6, "x" * (1_000_000 - 64 - len(key) - 250)))
    big = big.replace(b"x", b"y" * (1_000_000 - 64 - len(key) - len(big) + 1), 1)  # to the byte
    assert len(big) + len(key) == 1_000_000 - 64
    stream = [(key, _reading(key, s)) for s in range(1, 6)] + [(key, big)]
    stream += [(key, _reading(key, s)) for s in range(7, 12)]
    produce(bs, topics.raw, stream)  # type: ignore[arg-type]
    config = enricher_config(brokers, topics, consumer_group())
    with InProcess(config) as run:
        processed = read_all(bs, topics.processed, 10, timeout=60)
        [letter] = read_all(bs, topics.deadletter, 1)
    assert sorted(e["seq"] for e in values(processed)) == [s for s in range(1, 12) if s != 6]
    h = {k: v.decode() for k, v in letter.headers()}
    assert (h["dlq_reason"], h["dlq_original_offset"]) == ("oversized", "5")
    assert h["dlq_truncated"] == str(len(big))
    assert 900_000 < len(letter.value()) < len(big) and big.startswith(letter.value())
    aborts = run.processor.metrics.aborts.collect()
    assert sum(s.value for metric in aborts for s in metric.samples if s.name.endswith("_total")) == 0
