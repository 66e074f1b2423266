"""`simulate fleet --faults reflash,diskfull`: a device reflashed and a device whose disk fills, for real.

A fleet of real agents, driven by two shared loops (:mod:`simulators.shared_loop`: the stop of a
reflashed device goes step by step there too), through a real bridge and enricher. Each fault is proven
independently of the simulator's own word: a reflash by the device's outbox on disk (a new epoch, its
seqs from 1 again) and by ``iot.events.raw`` holding both epochs of the device; a full disk by a gap
event with reason ``rejected`` in ``iot.events.raw`` naming the very seqs the expectation file lists as
refused, none of which arrived as a reading. Then every committed event of every life is once in
``iot.events.processed`` (a separate read_committed consumer), and `simulate audit` reads 0 lost,
0 duplicated, with a line per fault kind.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson

from edge_agent.outbox import read_status
from simulators.audit import read_topic
from simulators.expectation import Expectation
from tests.e2e.conftest import Pipeline
from tests.waiting import wait_for


def test_reflashed_and_full_disk_devices_are_accounted_for(
    pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    p = pipeline()
    p.start_enricher()
    assert p.bridge().start().wait_healthy(30)
    expect, state = tmp_path / "fleet.json", tmp_path / "state"
    cmd = [sys.executable, "-m", "edgebridge", "simulate", "fleet", "--url", p.mqtt_url, "--topic-prefix",
           p.prefix, "--devices", "8", "--rate", "5", "--duration", "22", "--procs", "1", "--id-prefix",
           "lv-", "--seed", "11", "--faults", "reflash,diskfull", "--fault-every", "3", "--loops", "2",
           "--state-dir", str(state), "--expect", str(expect)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    err = "\n".join(line for line in run.stderr.splitlines() if not line.startswith("%"))
    assert run.returncode == 0, err
    assert re.search(r"\d+ readings committed, \d+ receipted, 0 left in the outboxes", err), err  # drained
    assert re.search(r"2 shared loops per process, [1-9]\d* steps", err), err  # driven by the shared loops
    expectation = Expectation.read(expect)
    faults = expectation.faults
    reflashed = {f["devices"][0] for f in faults if f["kind"] == "reflash"}
    filled = {f["devices"][0] for f in faults if f["kind"] == "diskfull"}
    assert reflashed and filled, faults
    assert all(re.search(rf"\] fault {f['kind']}: {f['devices'][0]}", err) for f in faults), err  # logged

    raw = [orjson.loads(v) for v in read_topic(p.bootstrap, p.topics.raw, idle=1.0)]
    raw_epochs: dict[str, set[str]] = {}
    rejected: dict[tuple[str, str], list[tuple[int, int]]] = {}
    readings: set[tuple[str, str, int]] = set()
    for e in raw:
        raw_epochs.setdefault(e["deviceid"], set()).add(e["epoch"])
        if e["type"] == "edgebridge.gap.v1" and e["data"]["reason"] == "rejected":
            gap = (e["data"]["first"], e["data"]["last"])
            rejected.setdefault((e["deviceid"], e["epoch"]), []).append(gap)
        elif e["type"] == "edgebridge.reading.v1":
            readings.add((e["deviceid"], e["epoch"], e["seq"]))

    # a reflash: the device's outbox on disk is a later life than its first, seqs from 1 again, and Kafka
    # holds both lives
    for device in reflashed:
        epochs = list(expectation.devices[device])
        assert len(epochs) >= 2, (device, expectation.devices[device])
        status = read_status(state / device / "outbox.db")
        assert status["epoch"] == epochs[-1] != epochs[0]
        assert expectation.devices[device][epochs[-1]]["committed"][0][0] == 1
        assert set(epochs) <= raw_epochs[device], (device, epochs, raw_epochs[device])

    # a full disk: what the expectation says was refused is what the device announced as rejected in
    # Kafka (unless a reflash wiped the life before the disk had room for the announcement), and none of
    # it arrived as a reading
    refused = {(d, e): spec["refused"] for d, epochs in expectation.devices.items()
               for e, spec in epochs.items() if spec["refused"]}
    assert refused and {d for d, _ in refused} <= filled, (refused, filled)
    for (device, epoch), ranges in refused.items():
        assert not any((device, epoch, s) in readings for a, b in ranges for s in range(a, b + 1))
        last_life = epoch == list(expectation.devices[device])[-1]
        assert sorted(rejected.get((device, epoch), [])) == ranges or not last_life, (device, rejected)
    announced = [key for key, ranges in refused.items() if sorted(rejected.get(key, [])) == ranges]
    assert announced, (refused, rejected)
    over = [int(n) for n in re.findall(r"fault diskfull over: \S+ has room again, (\d+) events refused", err)]
    assert sum(over) == sum(b - a + 1 for ranges in refused.values() for a, b in ranges) > 0, (over, refused)

    # every committed event of every life once in processed, read back by our own consumer
    expected = {(d, e, s) for d, epochs in expectation.devices.items() for e, spec in epochs.items()
                for a, b in spec["committed"] for s in range(a, b + 1)}
    wiped = {(d, e, s) for d, epochs in expectation.devices.items() for e, spec in epochs.items()
             for a, b in spec["wiped"] for s in range(a, b + 1)}
    seen: Counter[tuple[str, str, int]] = Counter()

    def arrived() -> bool:
        seen.clear()
        for value in read_topic(p.bootstrap, p.topics.processed, idle=1.0):
            event = orjson.loads(value)
            if event["deviceid"].startswith("lv-"):
                seen[(event["deviceid"], event.get("epoch") or "", event["seq"])] += 1
        return expected - wiped <= set(seen)

    wait_for(arrived, 120, "every committed event in processed", every=2.0)
    assert set(seen) <= expected and max(seen.values()) == 1
    audit = subprocess.run([sys.executable, "-m", "edgebridge", "simulate", "audit", "--expect", str(expect),
                            "--bootstrap", p.bootstrap, "--topic", p.topics.processed],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert audit.returncode == 0 and "lost 0, duplicated 0" in audit.stdout, audit.stdout
    n_refused = sum(b - a + 1 for ranges in refused.values() for a, b in ranges)
    assert re.search(rf"fault diskfull: \d+ times, {len(filled)} devices \(\d+ epochs\): "
                     rf"refused {n_refused}, ", audit.stdout), audit.stdout
    assert re.search(rf"fault reflash: \d+ times, {len(reflashed)} devices \((\d+) epochs\): .* lost 0, "
                     r"duplicated 0", audit.stdout), audit.stdout
