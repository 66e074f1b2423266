"""`edgebridge simulate fleet --faults all`: each fault kind really happens, and the audit stays clean.

A fleet of real agents through a real bridge and enricher, with every fault kind of
:mod:`simulators.fleet_faults` on a fast schedule. Each fault is proven from Kafka, read independently:
a disconnect by the device's Last Will (``offline``) in the status topic, a malformed payload by a dead
letter, a duplicate by its (device, epoch, seq) twice in ``iot.events.raw``, a clock fault by a
processed reading stamped hours ahead. Then `edgebridge simulate audit` finds every committed event
once in ``iot.events.processed``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from simulators.audit import read_topic
from simulators.expectation import Expectation
from simulators.fleet_faults import KINDS
from tests.e2e.conftest import Pipeline
from tests.waiting import wait_for


def test_every_fault_kind_happens_and_processed_still_holds_each_event_once(
    pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    p = pipeline()
    p.start_enricher()
    assert p.bridge().start().wait_healthy(30)
    expect = tmp_path / "fleet.json"
    cmd = [sys.executable, "-m", "edgebridge", "simulate", "fleet", "--url", p.mqtt_url, "--topic-prefix",
           p.prefix, "--devices", "20", "--rate", "5", "--duration", "25", "--procs", "1", "--id-prefix",
           "ff-", "--seed", "5", "--faults", "all", "--fault-every", "2",
           "--expect", str(expect)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    err = "\n".join(line for line in run.stderr.splitlines() if not line.startswith("%"))
    assert run.returncode == 0, err
    expectation = Expectation.read(expect)
    faults = expectation.faults
    assert {f["kind"] for f in faults} == set(KINDS), faults  # ~12 faults: every kind at least twice
    assert all("not sent" not in f["detail"] for f in faults), faults
    assert all(f"fault {f['kind']}: " in err for f in faults), err  # each logged with its time

    def of(kind: str) -> list[dict[str, Any]]:
        return [f for f in faults if f["kind"] == kind]

    # a disconnect: the broker published the device's Last Will, which the bridge put into Kafka: an
    # "offline" besides the one every agent publishes when it stops at the end
    # (storms in the last 5 s may end the run with the device still away: no final "offline" then)
    stormed = {d for f in of("disconnect") if float(f["at"]) <= 20 for d in f["devices"]}
    offline = Counter(orjson.loads(v)["deviceid"] for v in read_topic(p.bootstrap, p.topics.status, idle=1.0)
                      if orjson.loads(v).get("status") == "offline")
    assert stormed and all(offline[d] >= 2 for d in stormed), (stormed, offline)
    assert sum(offline[d] == 1 for d in expectation.devices) >= 10, offline  # the others: only the last
    # a malformed payload: dead-lettered by the bridge (this pipeline's own dead-letter topic)
    assert len(read_topic(p.bootstrap, p.topics.deadletter, idle=1.0)) >= len(of("malformed"))
    # a duplicate: the same (device, seq) twice in raw
    raw: Counter[tuple[str, int]] = Counter()
    for value in read_topic(p.bootstrap, p.topics.raw, idle=1.0):
        event = orjson.loads(value)
        if event.get("type") == "edgebridge.reading.v1":
            raw[(event["deviceid"], event["seq"])] += 1
    # (at least one: a row the agent had not sent yet may be receipted on the fault's copy alone)
    # (a device whose outbox was empty at that moment had nothing to duplicate: detail says so)
    copies = [raw[(f["devices"][0], int(f["detail"].split()[1]))]
              for f in of("duplicate") if f["detail"].startswith("seq ")]
    assert copies and max(copies) >= 2, copies

    # every committed event once in processed; the skewed device's late readings 3 h ahead
    expected = {(d, e, s) for d, epochs in expectation.devices.items() for e, spec in epochs.items()
                for a, b in spec["committed"] for s in range(a, b + 1)}
    # (a reflash of a device the storm had cut off wipes what it still held: lost, and listed as such)
    wiped = {(d, e, s) for d, epochs in expectation.devices.items() for e, spec in epochs.items()
             for a, b in spec["wiped"] for s in range(a, b + 1)}
    seen: Counter[tuple[str, str, int]] = Counter()
    ahead: set[str] = set()

    def arrived() -> bool:
        seen.clear()
        ahead.clear()
        for value in read_topic(p.bootstrap, p.topics.processed, idle=1.0):
            event = orjson.loads(value)
            if event["deviceid"].startswith("ff-"):
                seen[(event["deviceid"], event.get("epoch") or "", event["seq"])] += 1
                if datetime.fromisoformat(event["time"]).timestamp() > time.time() + 2 * 3600:
                    ahead.add(event["deviceid"])
        return expected - wiped <= set(seen)

    wait_for(arrived, 120, "every committed event in processed", every=2.0)
    assert set(seen) <= expected and max(seen.values()) == 1
    skewed = {f["devices"][0] for f in of("clock") if float(f["at"]) <= 20}
    assert skewed and skewed <= ahead, (skewed, ahead)  # later ones may have had no reading left to stamp
    audit = subprocess.run([sys.executable, "-m", "edgebridge", "simulate", "audit", "--expect", str(expect),
                            "--bootstrap", p.bootstrap, "--topic", p.topics.processed],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert audit.returncode == 0 and "lost 0, duplicated 0" in audit.stdout, audit.stdout
