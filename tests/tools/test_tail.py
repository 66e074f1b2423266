"""``edgebridge tail``: filters, start positions, JSON and pretty output, --follow, dead-letter headers."""

from __future__ import annotations

import json
import time

import pytest

from edgebridge import deadletters, envelope
from tests.tools.conftest import Tools, produce

pytestmark = pytest.mark.brokers


def _event(device: str, seq: int) -> bytes:
    return envelope.encode(envelope.new_reading(device, seq, {"t": {"v": 20 + seq, "u": "Cel"}}, epoch="e1"))


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_tail_filters_by_device_and_starts_where_asked(tools: Tools) -> None:
    raw = tools.topics.raw
    first = [(d.encode(), _event(d, s), []) for s in (1, 2, 3) for d in ("dev-a", "dev-b")]
    produce(tools.bootstrap, raw, first, partition=0)
    time.sleep(1.5)  # Kafka timestamps are in ms: a clear second between the two batches
    cut = time.time()
    time.sleep(0.5)
    produce(tools.bootstrap, raw, [(b"dev-a", _event("dev-a", s), []) for s in (4, 5)], partition=0)

    everything = tools.run("tail", "raw", "--json")
    assert everything.returncode == 0, everything.stderr
    assert len(_lines(everything.stdout)) == 8

    mine = _lines(tools.run("tail", "raw", "--device", "dev-a", "--json").stdout)
    assert [(r["key"], r["value"]["seq"]) for r in mine] == [("dev-a", s) for s in (1, 2, 3, 4, 5)]
    assert all(r["topic"] == raw and r["partition"] == 0 for r in mine)

    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut)) + f".{int(cut % 1 * 1000):03d}Z"
    later = _lines(tools.run("tail", raw, "--from", since, "--json").stdout)
    assert [r["value"]["seq"] for r in later] == [4, 5]

    from_offset = _lines(tools.run("tail", "raw", "--from", "0:6", "--json").stdout)
    assert [r["offset"] for r in from_offset] == [6, 7]

    at_end = tools.run("tail", "raw", "--from", "end", "--json")
    assert at_end.returncode == 0 and at_end.stdout == ""

    pretty = tools.run("tail", "raw", "--device", "dev-b", "--limit", "1").stdout.splitlines()
    assert len(pretty) == 1 and f" {raw}[0]@1 dev-b " in pretty[0] and '"seq":1' in pretty[0]


def test_tail_shows_a_dead_letters_reason_error_and_origin(tools: Tools) -> None:
    headers = deadletters.headers(reason="unknown_device", error=ValueError("'dev-x' is not in the registry"),
                                  component="enricher", original=(tools.topics.raw, 1, 42), instance="e-1")
    bridge_headers = deadletters.headers(reason="bad_json", error="not JSON", component="bridge",
                                         mqtt_topic="devices/dev-y/events")
    produce(tools.bootstrap, tools.topics.deadletter,
            [(b"dev-x", _event("dev-x", 1), headers), (b"dev-y", b"{oops", bridge_headers)])

    result = tools.run("tail", "deadletter")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4  # each record, and its reason line under it
    assert lines[1].strip() == (f"unknown_device: ValueError: 'dev-x' is not in the registry  "
                                f"(from enricher {tools.topics.raw}/1/42)")
    assert lines[3].strip() == "bad_json: : not JSON  (from bridge devices/dev-y/events)"

    records = _lines(tools.run("tail", "deadletter", "--json").stdout)
    assert records[0]["deadletter"] == {"reason": "unknown_device", "error_class": "ValueError",
                                        "error": "'dev-x' is not in the registry",
                                        "origin": f"enricher {tools.topics.raw}/1/42"}
    assert records[0]["headers"]["dlq_instance"] == "e-1"
    assert records[1]["value"] == "{oops"  # not JSON: its text


def test_tail_follow_prints_what_arrives_after_it_started(tools: Tools) -> None:
    proc = tools.popen("tail", "processed", "--from", "end", "--follow", "--json")
    try:
        time.sleep(3)  # its consumer is assigned at the end before anything is written
        produce(tools.bootstrap, tools.topics.processed, [(b"dev-f", _event("dev-f", 9), [])])
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until it prints; the test's timeout bounds it
        assert json.loads(line)["value"]["seq"] == 9
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)  # also closes its pipes
    assert proc.returncode == 0, err


def test_tail_bad_input_is_one_line_not_a_traceback(tools: Tools) -> None:
    bad_from = tools.run("tail", "raw", "--from", "yesterday")
    assert bad_from.returncode == 2 and "expected beginning, end, an offset" in bad_from.stderr
    missing = tools.run("tail", "no.such.topic")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "edgebridge tail: topic 'no.such.topic' does not exist"
    no_file = tools.run("tail", "raw", "--config", "/nonexistent/ops.toml", config=False)
    assert no_file.returncode == 2 and no_file.stderr.startswith("edgebridge tail: /nonexistent/ops.toml: ")
    bad_key = tools.config.with_name("bad.toml")
    bad_key.write_text('[kafka]\nbootstrapp = "x:9092"\n')
    typo = tools.run("tail", "raw", "--config", str(bad_key), config=False)
    assert typo.returncode == 2 and "kafka.bootstrapp: unknown key (did you mean 'bootstrap'?)" in typo.stderr
    assert "Traceback" not in bad_from.stderr + missing.stderr + no_file.stderr + typo.stderr
