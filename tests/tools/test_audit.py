"""``edgebridge audit`` against real Kafka: holes, announced gaps, duplicates, two epochs, a time range,
offsets, an expectation file and the exit codes. Each fault is written into the topic by the test, so
what the audit must find is known from what was produced, not from the audit's own arithmetic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgebridge import envelope
from edgebridge.ops.expectation import Expectation
from tests.tools.conftest import Tools, produce

pytestmark = pytest.mark.brokers

T0 = "2026-12-06T01:00:00.000Z"


def _reading(device: str, seq: int, epoch: str = "e1", when: str | None = None) -> bytes:
    event = envelope.new_reading(device, seq, {"t": {"v": 20.0, "u": "Cel"}}, epoch=epoch,
                                 time=when or f"2026-12-06T01:00:{seq:02d}.000Z")
    return envelope.encode(event)


def _gap(device: str, seq: int, first: int, last: int, epoch: str = "e1") -> bytes:
    return envelope.encode(envelope.new_gap(device, seq, first, last, "evicted", epoch=epoch,
                                            time=f"2026-12-06T01:00:{seq:02d}.000Z"))


def _records(values: list[tuple[str, bytes]]) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    return [(device.encode(), value, []) for device, value in values]


def _epochs(stdout: str) -> dict[tuple[str, str], dict]:
    doc = json.loads(stdout)
    return {(e["device"], e["epoch"]): e for e in doc["epochs"]}


def test_holes_gaps_duplicates_and_epochs_of_the_processed_topic(tools: Tools, tmp_path: Path) -> None:
    # dev-a: 4-6 announced lost by a gap event (seq 7), 9 missing without a word
    dev_a = [_reading("dev-a", s) for s in (1, 2, 3)] + [_gap("dev-a", 7, 4, 6)]
    dev_a += [_reading("dev-a", s) for s in (8, 10)]
    # dev-b: a first life 1-5, then a new epoch (its state lost) 1-3 whose seq 3 arrives twice
    dev_b = [_reading("dev-b", s, "e1") for s in range(1, 6)]
    dev_b += [_reading("dev-b", s, "e2") for s in (1, 2, 3, 3)]
    dev_c = [_reading("dev-c", s) for s in range(1, 5)]
    every = [("dev-a", v) for v in dev_a] + [("dev-b", v) for v in dev_b] + [("dev-c", v) for v in dev_c]
    produce(tools.bootstrap, tools.topics.processed, _records(every))  # over both partitions, by key
    produce(tools.bootstrap, tools.topics.processed, [(b"dev-z", b"{not an event", [])])

    result = tools.run("audit", "--json")
    assert result.returncode == 1, result.stdout + result.stderr  # a hole and a duplicate in processed
    doc = json.loads(result.stdout)
    epochs = _epochs(result.stdout)
    assert set(epochs) == {("dev-a", "e1"), ("dev-b", "e1"), ("dev-b", "e2"), ("dev-c", "e1")}
    a = epochs[("dev-a", "e1")]
    assert (a["records"], a["distinct"], a["duplicates"], a["max_seq"]) == (6, 6, 0, 10)
    assert (a["announced"], a["missing"]) == ([[4, 6]], [[9, 9]])
    assert (a["first_time"], a["last_time"]) == ("2026-12-06T01:00:01.000Z", "2026-12-06T01:00:10.000Z")
    b1, b2 = epochs[("dev-b", "e1")], epochs[("dev-b", "e2")]
    assert (b1["records"], b1["duplicates"], b1["missing"]) == (5, 0, [])
    assert (b2["records"], b2["distinct"], b2["duplicates"], b2["missing"]) == (4, 3, 1, [])
    assert doc["totals"] == {"devices": 3, "epochs": 4, "records": 20, "distinct": 18, "duplicates": 1,
                             "announced": 3, "missing": 1, "undecodable": 1}
    assert doc["ok"] is False and doc["duplicates_allowed"] is False

    table = tools.run("audit", "--topic", "processed", "--problems")
    assert table.returncode == 1
    rows = table.stdout.splitlines()
    # dev-c and dev-b's first life are fine: no row
    assert [r.split()[:2] for r in rows[1:-1]] == [["dev-a", "e1"], ["dev-b", "e2"]]
    assert rows[1].split()[-2:] == ["4-6", "9-9"]
    assert rows[-1].startswith("FAILED: devices 3, epochs 4, records 20")

    clean = tools.run("audit", "--device", "dev-c")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines()[-1].startswith("OK: devices 1, epochs 1, records 4, distinct 4")

    # the raw topic may hold duplicates (at-least-once upstream); a hole there is still a failure
    produce(tools.bootstrap, tools.topics.raw, _records([("dev-b", v) for v in dev_b]))
    raw = tools.run("audit", "--topic", "raw", "--json")
    assert raw.returncode == 0, raw.stdout + raw.stderr
    assert json.loads(raw.stdout)["totals"]["duplicates"] == 1
    produce(tools.bootstrap, tools.topics.raw, _records([("dev-b", _reading("dev-b", 5, "e2"))]))
    assert tools.run("audit", "--topic", tools.topics.raw).returncode == 1  # e2's seq 4 is now missing

    # against a fleet's expectation file: dev-c complete; dev-x committed two seqs that never arrived
    expect = tmp_path / "fleet.json"
    Expectation("devices", {"dev-c": {"e1": {"committed": [(1, 4)], "gaps": []}}}).write(expect)
    assert tools.run("audit", "--expect", str(expect)).returncode == 0
    Expectation("devices", {"dev-c": {"e1": {"committed": [(1, 4)], "gaps": []}},
                            "dev-x": {"e9": {"committed": [(1, 2)], "gaps": []}}}).write(expect)
    lost = tools.run("audit", "--expect", str(expect))
    assert lost.returncode == 1
    assert "lost 2, duplicated 0, unexpected 0" in lost.stdout, lost.stdout


def test_a_time_range_and_offsets_count_holes_only_inside_what_they_cover(tools: Tools) -> None:
    raw = tools.topics.processed
    first = [("dev-t", _reading("dev-t", s)) for s in range(1, 6)]
    produce(tools.bootstrap, raw, _records(first), partition=0)
    time.sleep(1.5)  # Kafka timestamps are in ms: a clear second between the two batches
    cut = time.time()
    time.sleep(0.5)
    later = [_reading("dev-t", s) for s in (6, 7, 8, 10)]  # 9 missing
    produce(tools.bootstrap, raw, _records([("dev-t", v) for v in later]), partition=0)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut)) + f".{int(cut % 1 * 1000):03d}Z"

    after = tools.run("audit", "--from", since, "--json")
    assert after.returncode == 1
    (t,) = _epochs(after.stdout).values()
    assert (t["records"], t["missing"]) == (4, [[9, 9]])  # 1-5 are before the range, not missing

    before = tools.run("audit", "--until", since, "--json")
    assert before.returncode == 0, before.stdout + before.stderr
    (t,) = _epochs(before.stdout).values()
    assert (t["records"], t["max_seq"], t["missing"]) == (5, 5, [])

    offsets = tools.run("audit", "--from", "0:2", "--until", "0:7", "--json")  # seqs 3..7
    assert offsets.returncode == 0, offsets.stdout + offsets.stderr
    (t,) = _epochs(offsets.stdout).values()
    assert (t["records"], t["distinct"], t["max_seq"], t["missing"]) == (5, 5, 7, [])
    assert (t["first_time"], t["last_time"]) == ("2026-12-06T01:00:03.000Z", "2026-12-06T01:00:07.000Z")


def test_bad_usage_is_exit_2_and_a_kafka_error_exit_1_never_a_traceback(tools: Tools, tmp_path: Path) -> None:
    for args in (["--from", "yesterday"], ["--until", "-3"], ["--device", "a/b"]):
        result = tools.run("audit", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
    (tmp_path / "bad.json").write_text('{"version": 7}')
    for path in (tmp_path / "bad.json", tmp_path / "absent.json"):
        result = tools.run("audit", "--expect", str(path))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    missing = tools.run("audit", "--topic", "no.such.topic.here")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
