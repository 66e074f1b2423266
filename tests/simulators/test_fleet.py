"""`edgebridge simulate fleet` as a child process, against real brokers.

End to end: 50 virtual devices (each a real agent) through a real bridge and enricher; `edgebridge
simulate audit` then finds every committed event once in ``iot.events.processed``. What the devices
committed is taken from the expectation file and checked against each outbox's own status; what
arrived is counted by a separate read_committed consumer too. SIGTERM mid-run ends the fleet cleanly.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edge_agent.outbox import read_status
from simulators.audit import read_topic
from simulators.expectation import Expectation
from tests.conftest import BrokerAddresses
from tests.e2e.conftest import Pipeline
from tests.waiting import wait_for

FLEET = [sys.executable, "-m", "edgebridge", "simulate", "fleet"]


def _devices_in(bootstrap: str, topic: str, prefix: str) -> Counter[tuple[str, str, int]]:
    out: Counter[tuple[str, str, int]] = Counter()
    for value in read_topic(bootstrap, topic, idle=1.0):
        event = orjson.loads(value)
        if event["deviceid"].startswith(prefix):
            out[(event["deviceid"], event.get("epoch") or "", event["seq"])] += 1
    return out


def test_fleet_events_reach_processed_once_each(pipeline: Callable[..., Pipeline], tmp_path: Path) -> None:
    p = pipeline()
    p.start_enricher()
    assert p.bridge().start().wait_healthy(30)
    expect, state = tmp_path / "fleet.json", tmp_path / "state"
    cmd = [*FLEET, "--url", p.mqtt_url, "--topic-prefix", p.prefix, "--devices", "50", "--rate", "5",
           "--duration", "15", "--ramp-up", "2", "--procs", "2", "--id-prefix", "fl-", "--seed", "3",
           "--state-dir", str(state), "--expect", str(expect)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    err = "\n".join(line for line in run.stderr.splitlines() if not line.startswith("%"))
    assert run.returncode == 0, err
    assert re.search(r"fleet summary: 50 devices in 2 process\(es\) \(50 started, 0 failed\)", err), err
    assert re.search(r"(\d+) readings committed, \1 receipted, 0 left in the outboxes", err), err  # drained

    expectation = Expectation.read(expect)
    assert len(expectation.devices) == 50
    committed = {}
    for device, epochs in expectation.devices.items():
        (epoch, spec), = epochs.items()
        assert spec["gaps"] == [] and len(spec["committed"]) == 1
        first, last = spec["committed"][0]
        status = read_status(state / device / "outbox.db")  # the outbox's own word, not the observer's
        assert (first, epoch) == (1, status["epoch"]) and last == status["last_seq"][device]
        assert last >= 40, f"{device} committed only {last} in 15 s at 5/s"
        committed[device] = (epoch, last)
    expected = {(d, e, s) for d, (e, last) in committed.items() for s in range(1, last + 1)}

    # every committed event in processed (read_committed), counted by our own consumer
    seen: Counter[tuple[str, str, int]] = Counter()

    def arrived() -> bool:
        nonlocal seen
        seen = _devices_in(p.bootstrap, p.topics.processed, "fl-")
        return expected <= set(seen)

    wait_for(arrived, 90, "every committed event in processed", every=2.0)
    assert set(seen) == expected and max(seen.values()) == 1
    assert sum(seen.values()) == expectation.committed() == len(expected)

    audit = subprocess.run([sys.executable, "-m", "edgebridge", "simulate", "audit", "--expect", str(expect),
                            "--bootstrap", p.bootstrap, "--topic", p.topics.processed],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert (f"total: devices 50, present 50, committed {len(expected)}, received {len(expected)}, "
            "lost 0, duplicated 0, unexpected 0") in audit.stdout, audit.stdout

    # the same audit fails when a device claims 5 more seqs than Kafka holds
    (epoch, spec), = expectation.devices["fl-01"].items()
    spec["committed"] = [(1, spec["committed"][0][1] + 5)]
    expectation.write(expect)
    audit = subprocess.run(audit.args, capture_output=True, text=True, timeout=120)
    assert audit.returncode == 1 and "lost 5, duplicated 0" in audit.stdout, audit.stdout


@pytest.mark.parametrize("procs", [1, 2])
def test_sigterm_stops_the_fleet_with_a_summary(brokers: BrokerAddresses, tmp_path: Path, procs: int) -> None:
    cmd = [*FLEET, "--url", brokers.mqtt_url, "--topic-prefix", f"sigterm-{tmp_path.name}", "--devices", "6",
           "--rate", "5", "--procs", str(procs), "--expect", str(tmp_path / "fleet.json")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        wait_for(lambda: lines.append(proc.stderr.readline()) or re.search(r"committed [1-9]", lines[-1]),
                 30, "a live line with readings committed")  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    found = re.search(r"fleet summary: 6 devices in \d process\(es\) \(6 started, 0 failed\), (\d+) readings",
                      rest)
    assert found and int(found[1]) > 0, rest
    expectation = Expectation.read(tmp_path / "fleet.json")
    assert len(expectation.devices) == 6 and expectation.committed() >= int(found[1])


def test_shared_loops_carry_200_devices_each_event_once(pipeline: Callable[..., Pipeline],
                                                          tmp_path: Path) -> None:
    """200 devices driven by two shared loops (--loops 2), not 200 threads: each still a whole device
    (its own outbox and epoch on disk), every committed event once in processed, read back by our own
    consumer, and the audit clean. The process holds more than 1,023 descriptors (6 a device), where
    a client waiting in select() fails: the faults' own publishes (malformed, duplicate) must go."""
    p = pipeline()
    p.start_enricher()
    assert p.bridge().start().wait_healthy(30)
    expect, state = tmp_path / "fleet.json", tmp_path / "state"
    cmd = [*FLEET, "--url", p.mqtt_url, "--topic-prefix", p.prefix, "--devices", "200", "--rate", "1",
           "--duration", "8", "--ramp-up", "2", "--procs", "1", "--loops", "2", "--id-prefix", "sl-",
           "--faults", "malformed,duplicate", "--fault-every", "2",
           "--state-dir", str(state), "--expect", str(expect)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    err = "\n".join(line for line in run.stderr.splitlines() if not line.startswith("%"))
    assert run.returncode == 0, err
    assert re.search(r"fleet summary: 200 devices in 1 process\(es\) \(200 started, 0 failed\)", err), err
    assert re.search(r"(\d+) readings committed, \1 receipted, 0 left in the outboxes", err), err
    assert re.search(r"2 shared loops per process, [1-9]\d* steps", err), err
    faults = Expectation.read(expect).faults
    assert len(faults) >= 2 and all("not sent" not in f["detail"] for f in faults), faults

    expectation = Expectation.read(expect)
    epochs = {device: next(iter(lives)) for device, lives in expectation.devices.items()}
    assert len(epochs) == len(set(epochs.values())) == 200  # 200 outboxes, each its own epoch
    for device in ("sl-001", "sl-100", "sl-200"):
        assert read_status(state / device / "outbox.db")["epoch"] == epochs[device]
    expected = {(d, e, s) for d, lives in expectation.devices.items() for e, spec in lives.items()
                for a, b in spec["committed"] for s in range(a, b + 1)}
    assert len(expected) >= 200 * 5, len(expected)  # ~6-8 s of readings at 1/s each
    seen: Counter[tuple[str, str, int]] = Counter()

    def arrived() -> bool:
        nonlocal seen
        seen = _devices_in(p.bootstrap, p.topics.processed, "sl-")
        return expected <= set(seen)

    wait_for(arrived, 90, "every committed event in processed", every=2.0)
    assert set(seen) == expected and max(seen.values()) == 1
    audit = subprocess.run([sys.executable, "-m", "edgebridge", "simulate", "audit", "--expect", str(expect),
                            "--bootstrap", p.bootstrap, "--topic", p.topics.processed],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert audit.returncode == 0 and "lost 0, duplicated 0, unexpected 0" in audit.stdout, audit.stdout
