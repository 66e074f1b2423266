"""What a fleet run committed, and the check of a topic against it.

The expectation file (JSON, written by ``edgebridge simulate fleet --expect``) holds, per device and
epoch (each life of its outbox), the seq ranges the outbox committed in the run (readings and gap
events), the ranges it announced as lost (``edgebridge.gap.v1``), the seqs a full disk refused (burnt,
never committed: not expected) and the rows a reflash wiped (committed, still on the device when its
state dir went: lost unless they had already reached Kafka); and the faults the schedule injected, in
order::

    {"version": 1, "topic_prefix": "devices",
     "devices": {"sim-01": {"epochs": {"3f2a...": {"committed": [[1, 30]], "gaps": [], "refused": [],
                                                   "wiped": []}}}},
     "faults": [{"at": 12.5, "kind": "reflash", "devices": ["sim-01"], "detail": "epoch 3f2a... wiped"}]}

:func:`check` compares records read from a topic (``iot.events.processed`` by default) with it, per
device: ``lost`` are committed seqs neither present nor announced nor wiped, ``duplicated`` are (epoch,
seq) present more than once, ``unexpected`` are records of a listed device outside what it committed in
the run (an earlier run's backlog on a reused state dir, another process using the same ids). Devices
not listed are left out: the topic may carry other traffic. :func:`format_faults` reads the same checks
per fault kind: what the faulted devices had refused, held (committed and received) and lost. The
counting is :mod:`edgebridge.ops.tally`'s, so
``edgebridge audit --expect`` and ``edgebridge simulate audit`` say the same, streaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from edgebridge.ops.seqset import SeqSet, uncovered
from edgebridge.ops.tally import EpochTally
from edgebridge.receipts import merge_ranges

__all__ = ["DeviceCheck", "Expectation", "ExpectationCheck", "check", "check_keys", "format_checks",
           "format_faults", "totals"]

Ranges = list[tuple[int, int]]
RANGES = ("committed", "gaps", "refused", "wiped")  # the ranges kept per (device, epoch)


class Life(Protocol):
    def as_dict(self) -> dict[str, Ranges]: ...


class CommittedDevice(Protocol):
    """What :meth:`Expectation.of` reads of a simulated device (``simulators.fleet.VirtualDevice``):
    each life (epoch) of its outbox in the run."""

    device: str

    @property
    def lives(self) -> Mapping[str, Life]: ...

    def epoch(self) -> str: ...


@dataclass
class Expectation:
    topic_prefix: str = "devices"
    # device -> epoch -> {"committed": ranges, "gaps": ranges}
    devices: dict[str, dict[str, dict[str, Ranges]]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)  # what the fault schedule did, in order

    @classmethod
    def of(cls, fleet: Iterable[CommittedDevice], topic_prefix: str) -> Expectation:
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
        """The file at ``path``; ``ValueError`` saying what is wrong with one that is not such a file."""
        try:
            doc = orjson.loads(path.read_bytes())
            if not isinstance(doc, dict) or doc.get("version") != 1:
                raise ValueError("not an expectation file of version 1")
            devices = {
                str(device): {str(epoch): {k: [(int(a), int(b)) for a, b in spec.get(k, [])]
                                           for k in RANGES}
                              for epoch, spec in entry["epochs"].items()}
                for device, entry in doc["devices"].items()
            }
        except OSError as exc:
            raise ValueError(f"{path}: {exc.strerror}") from None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: not an expectation file of version 1 ({exc})") from None
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


class ExpectationCheck:
    """:func:`check_keys`, one record at a time: memory of the expectation's size, not the topic's."""

    def __init__(self, expectation: Expectation) -> None:
        self.expectation = expectation
        self._committed = {(d, e): SeqSet(spec["committed"]) for d, epochs in expectation.devices.items()
                           for e, spec in epochs.items()}
        self._tallies: dict[tuple[str, str], EpochTally] = {}
        self._unexpected = dict.fromkeys(expectation.devices, 0)

    def add(self, device: str, epoch: str, seq: int) -> None:
        if device not in self._unexpected:
            return  # another device's traffic
        key = (device, epoch or "")
        committed = self._committed.get(key)
        if committed is None or seq not in committed:
            self._unexpected[device] += 1
            return
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = EpochTally(*key)
        tally.add(seq)

    def result(self) -> dict[str, DeviceCheck]:
        out = {}
        for device, epochs in self.expectation.devices.items():
            result = out[device] = DeviceCheck(device, unexpected=self._unexpected[device],
                                               epochs=len(epochs))
            for epoch, spec in epochs.items():
                tally = self._tallies.get((device, epoch)) or EpochTally(device, epoch)
                result.committed += len(self._committed[(device, epoch)])
                result.received += tally.events
                result.duplicated += tally.duplicates
                wiped = spec.get("wiped", [])
                result.refused += sum(b - a + 1 for a, b in spec.get("refused", []))
                for a, b in wiped:
                    result.wiped += b - a + 1
                    result.wiped_lost += sum(b2 - a2 + 1 for a2, b2 in uncovered(a, b, tally.seen))
                for a, b in spec["committed"]:
                    result.lost += uncovered(a, b, tally.seen, spec["gaps"], wiped)
            result.lost = merge_ranges(result.lost)
        return out


def check(expectation: Expectation, values: Iterable[bytes]) -> dict[str, DeviceCheck]:
    """Per listed device, what of its committed seqs the topic's records hold, lack or repeat."""
    keys = ((e.get("deviceid"), e.get("epoch") or "", e["seq"]) for e in map(orjson.loads, values))
    return check_keys(expectation, keys)


def check_keys(expectation: Expectation, keys: Iterable[tuple[str, str, int]]) -> dict[str, DeviceCheck]:
    """:func:`check` of (device, epoch, seq) keys however they were read (a sink's table, say)."""
    checker = ExpectationCheck(expectation)
    for device, epoch, seq in keys:
        checker.add(device, epoch, seq)
    return checker.result()


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
    lines.append("total: " + ", ".join(f"{k} {v}" for k, v in totals(checks).items()))
    return "\n".join(lines)


def totals(checks: Mapping[str, DeviceCheck]) -> dict[str, int]:
    return {
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
