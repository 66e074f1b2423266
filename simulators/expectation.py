"""What a fleet run committed, and the check of a Kafka topic against it.

The expectation file (JSON) holds, per device and epoch (each life of its outbox), the seq ranges the
outbox committed in the run (readings and gap events), the ranges it announced as lost
(``edgebridge.gap.v1``), the seqs a full disk refused (burnt, never committed: not expected) and the rows
a reflash wiped (committed, still on the device when its state dir went: lost unless they had already
reached Kafka); and the faults the schedule injected, in order::

    {"version": 1, "topic_prefix": "devices",
     "devices": {"sim-01": {"epochs": {"3f2a...": {"committed": [[1, 30]], "gaps": [], "refused": [],
                                                   "wiped": []}}}},
     "faults": [{"at": 12.5, "kind": "reflash", "devices": ["sim-01"], "detail": "epoch 3f2a... wiped"}]}

:func:`check` compares records read from a topic (``iot.events.processed`` by default) with it, per
device: ``lost`` are committed seqs neither present nor announced nor wiped, ``duplicated`` are (epoch,
seq) present more than once, ``unexpected`` are records of a listed device outside what it committed in
the run (an earlier run's backlog on a reused state dir, another process using the same ids). Devices
not listed are left out: the topic may carry other traffic. :func:`format_faults` reads the same checks
per fault kind: what the faulted devices had refused, held (committed and received) and lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from simulators.audit import seq_ranges

if TYPE_CHECKING:
    from simulators.fleet import VirtualDevice

__all__ = ["DeviceCheck", "Expectation", "check", "check_keys", "format_checks", "format_faults"]

Ranges = list[tuple[int, int]]
RANGES = ("committed", "gaps", "refused", "wiped")  # the ranges kept per (device, epoch)


@dataclass
class Expectation:
    topic_prefix: str = "devices"
    # device -> epoch -> {"committed": ranges, "gaps": ranges}
    devices: dict[str, dict[str, dict[str, Ranges]]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)  # what the fault schedule did, in order

    @classmethod
    def of(cls, fleet: Iterable[VirtualDevice], topic_prefix: str) -> Expectation:
        out = cls(topic_prefix)
        for d in fleet:
            lives = {epoch: life.as_dict() for epoch, life in d.lives.items()}
            out.devices[d.device] = lives or {d.epoch(): {k: [] for k in RANGES}}
        return out

    def write(self, path: Path) -> None:
        devices = {d: {"epochs": epochs} for d, epochs in self.devices.items()}
        doc = {"version": 1, "topic_prefix": self.topic_prefix, "devices": devices, "faults": self.faults}
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    @classmethod
    def read(cls, path: Path) -> Expectation:
        doc = orjson.loads(path.read_bytes())
        if doc.get("version") != 1:
            raise ValueError(f"{path}: not an expectation file of version 1")
        devices = {
            device: {epoch: {k: [(a, b) for a, b in spec.get(k, [])] for k in RANGES}
                     for epoch, spec in entry["epochs"].items()}
            for device, entry in doc["devices"].items()
        }
        return cls(doc.get("topic_prefix", "devices"), devices, doc.get("faults", []))

    def committed(self) -> int:
        """How many seqs the devices committed in all (readings and gap events)."""
        return sum(b - a + 1 for epochs in self.devices.values() for spec in epochs.values()
                   for a, b in spec["committed"])


@dataclass
class DeviceCheck:
    device: str
    committed: int = 0  # seqs committed in the run
    received: int = 0  # records of the device in the topic, within what it committed
    lost: Ranges = field(default_factory=list)  # (epoch omitted) committed, not announced, not present
    duplicated: int = 0  # records beyond the first of an (epoch, seq)
    unexpected: int = 0  # records outside what it committed
    epochs: int = 0  # lives of the device in the run
    refused: int = 0  # seqs a full disk refused: never committed, not expected
    wiped: int = 0  # seqs a reflash wiped from the device
    wiped_lost: int = 0  # of them, not in the topic (lost with the device's state)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated


def _covers(ranges: Ranges, seq: int) -> bool:
    return any(a <= seq <= b for a, b in ranges)


def check(expectation: Expectation, values: Iterable[bytes]) -> dict[str, DeviceCheck]:
    """Per listed device, what of its committed seqs the topic's records hold, lack or repeat."""
    keys = ((e.get("deviceid"), e.get("epoch") or "", e["seq"]) for e in map(orjson.loads, values))
    return check_keys(expectation, keys)


def check_keys(expectation: Expectation, keys: Iterable[tuple[str, str, int]]) -> dict[str, DeviceCheck]:
    """:func:`check` of (device, epoch, seq) keys however they were read (a sink's table, say)."""
    seen: dict[str, Counter[tuple[str, int]]] = {d: Counter() for d in expectation.devices}
    for device, epoch, seq in keys:
        counter = seen.get(device)
        if counter is not None:
            counter[(epoch or "", seq)] += 1
    out = {}
    for device, epochs in expectation.devices.items():
        result = out[device] = DeviceCheck(device)
        missing: set[int] = set()
        for (epoch, seq), n in seen[device].items():
            spec = epochs.get(epoch)
            if spec is None or not _covers(spec["committed"], seq):
                result.unexpected += n
                continue
            result.received += n
            result.duplicated += n - 1
        result.epochs = len(epochs)
        for epoch, spec in epochs.items():
            wiped = spec.get("wiped", [])
            result.refused += sum(b - a + 1 for a, b in spec.get("refused", []))
            for a, b in wiped:
                result.wiped += b - a + 1
                result.wiped_lost += sum((epoch, s) not in seen[device] for s in range(a, b + 1))
            explained = [*spec.get("gaps", []), *wiped]
            for a, b in spec["committed"]:
                result.committed += b - a + 1
                missing.update(s for s in range(a, b + 1)
                               if (epoch, s) not in seen[device] and not _covers(explained, s))
        result.lost = seq_ranges(missing)
    return out


def format_checks(checks: Mapping[str, DeviceCheck]) -> str:
    """One row per device with a problem, then the totals."""
    rows = [c for c in checks.values() if not c.ok or c.unexpected or not c.received]
    lines = [f"{'device':<20} {'committed':>9} {'received':>9} {'dups':>6} {'unexpected':>10} lost"]
    for c in rows[:50]:
        lost = ",".join(f"{a}-{b}" for a, b in c.lost[:5]) or "none"
        lines.append(f"{c.device:<20} {c.committed:>9} {c.received:>9} {c.duplicated:>6} "
                     f"{c.unexpected:>10} {lost}")
    if len(rows) > 50:
        lines.append(f"... and {len(rows) - 50} more devices with a problem")
    total: dict[str, Any] = {
        "devices": len(checks),
        "present": sum(1 for c in checks.values() if c.received),
        "committed": sum(c.committed for c in checks.values()),
        "received": sum(c.received for c in checks.values()),
        "lost": sum(b - a + 1 for c in checks.values() for a, b in c.lost),
        "duplicated": sum(c.duplicated for c in checks.values()),
        "unexpected": sum(c.unexpected for c in checks.values()),
        "refused": sum(c.refused for c in checks.values()),
        "wiped": sum(c.wiped for c in checks.values()),
        "wiped lost": sum(c.wiped_lost for c in checks.values()),
    }
    lines.append("total: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    return "\n".join(lines)


def format_faults(expectation: Expectation, checks: Mapping[str, DeviceCheck]) -> str:
    """One line per fault kind of the run: how often, on how many devices, and what those devices'
    events became: refused by a full disk (never committed), wiped by a reflash (lost unless they had
    reached the topic), held (committed and in the topic: kept through the fault), lost, duplicated.
    A device hit by several kinds counts under each."""
    kinds: dict[str, tuple[int, set[str]]] = {}
    for fault in expectation.faults:
        n, devices = kinds.get(fault["kind"], (0, set()))
        kinds[fault["kind"]] = (n + 1, devices | {d for d in fault["devices"] if d in checks})
    lines = []
    for kind, (n, devices) in kinds.items():
        hit = [checks[d] for d in sorted(devices)]
        lines.append(
            f"fault {kind}: {n} times, {len(hit)} devices ({sum(c.epochs for c in hit)} epochs): "
            f"refused {sum(c.refused for c in hit)}, wiped {sum(c.wiped for c in hit)} "
            f"(lost {sum(c.wiped_lost for c in hit)}), held {sum(c.received - c.duplicated for c in hit)}, "
            f"lost {sum(b - a + 1 for c in hit for a, b in c.lost)}, "
            f"duplicated {sum(c.duplicated for c in hit)}")
    return "\n".join(lines)
