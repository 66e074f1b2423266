"""One dead-letter contract: the builder, its use by the bridge, and its one table in the docs."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import orjson

from bridge.config import UplinkConfig
from bridge.validate import Translator
from edgebridge import deadletters
from edgebridge.deadletters import HEADERS, REASONS
from edgebridge.envelope import REASONS as DECODER_REASONS
from edgebridge.envelope import encode, new_reading, to_dict
from edgebridge.errors import EnvelopeError
from edgebridge.topics import KafkaTopics

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "deadletters.md"


def test_headers_carry_what_applies_and_only_that() -> None:
    error = EnvelopeError("bad_seq", "seq 0 is outside 1..2**63-1", 3)
    minimal = dict(deadletters.headers(reason="bad_seq", error=error, component="bridge", time=0.5))
    assert minimal == {
        "dlq_reason": b"bad_seq",
        "dlq_error_class": b"EnvelopeError",
        "dlq_error": b"bad_seq: seq 0 is outside 1..2**63-1 (batch item 3)",
        "dlq_component": b"bridge",
        "dlq_time": b"1970-01-01T00:00:00.500Z",
    }
    full = dict(deadletters.headers(
        reason="step_failed", error=ValueError("x"), component="enricher", original=("raw", 2, 41),
        mqtt_topic="devices/d/events", index=0, truncated=300_000, step="derive", instance="i0"))
    assert set(full) == set(HEADERS)
    assert (full["dlq_error_class"], full["dlq_original_partition"], full["dlq_original_offset"],
            full["dlq_index"], full["dlq_truncated"]) == (b"ValueError", b"2", b"41", b"0", b"300000")
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", full["dlq_time"])


def test_building_headers_never_fails() -> None:
    class Mute(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    surrogate = "key \udcff"  # what bytes.decode("utf-8", "surrogateescape") makes of a bad key
    headers = dict(deadletters.headers(reason="internal_error", error=Mute(), component="enricher",
                                       original=(surrogate, 0, 0), instance=surrogate))
    assert headers["dlq_error"] == b"Mute" and headers["dlq_original_topic"] == b"key \\udcff"
    long = dict(deadletters.headers(reason="not_json", error="x" * 5000, component="bridge"))
    assert len(long["dlq_error"]) == deadletters.MAX_ERROR_CHARS and long["dlq_error_class"] == b""


def test_cut() -> None:
    assert deadletters.cut(b"abc", 3) == (b"abc", None)
    assert deadletters.cut(b"abcd", 3) == (b"abc", 4)


def _translator(**kw: object) -> Translator:
    return Translator("devices", UplinkConfig(**kw), KafkaTopics(raw="raw", deadletter="dlq"))  # type: ignore[arg-type]


def test_the_bridge_writes_the_one_schema() -> None:
    t = _translator(max_deadletter_payload=100)
    item = to_dict(new_reading("d1", 1, {"t": {"v": 1}}))
    [dead] = t.records("devices/d1/events", orjson.dumps([{**item, "seq": 0}]), 1.25)
    headers = dict(dead.headers)
    assert set(headers) == {"dlq_reason", "dlq_error_class", "dlq_error", "dlq_component", "dlq_time",
                            "dlq_mqtt_topic", "dlq_index", "dlq_truncated"}
    assert (headers["dlq_reason"], headers["dlq_component"], headers["dlq_mqtt_topic"],
            headers["dlq_index"], headers["dlq_time"]) == (
        b"bad_seq", b"bridge", b"devices/d1/events", b"0", b"1970-01-01T00:00:01.250Z")
    assert len(dead.value) == 100 and int(headers["dlq_truncated"]) > 100


def test_the_bridges_internal_error_names_the_class_of_what_failed() -> None:
    """A status message whose MQTT 5 properties no check foresaw (paho hands them over as objects)."""
    t = _translator()
    hostile = SimpleNamespace(CorrelationData=-1)  # bytes(-1): ValueError
    [dead] = t.records("devices/d1/status", b"online", 0.0, hostile)
    headers = dict(dead.headers)
    assert (dead.reason, headers["dlq_error_class"]) == ("internal_error", b"ValueError")
    assert headers["dlq_error"].startswith(b"internal_error: ValueError")
    assert dead.value == b"online" and dead.key == b"d1"
    [ok] = t.records("devices/d1/events", encode(new_reading("d1", 1, {"t": {"v": 1}})), 0.0)
    assert ok.topic == "raw"  # and the next message goes through


def _doc_table(heading: str) -> list[str]:
    section = DOC.read_text().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def test_the_doc_lists_every_header_and_every_reason_once() -> None:
    documented_headers = [name for row in _doc_table("The dead-letter topic")
                          for name in re.findall(r"`(dlq_[a-z_]+)`", row.split("|")[1])]
    assert sorted(documented_headers) == sorted(HEADERS)
    documented_reasons = [re.findall(r"`([a-z_]+)`", row)[0] for row in _doc_table("Reason codes")]
    assert len(documented_reasons) == len(set(documented_reasons))
    assert set(documented_reasons) == REASONS
    assert DECODER_REASONS <= REASONS
