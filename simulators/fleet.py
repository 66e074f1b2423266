"""`edgebridge simulate fleet`: N virtual devices in one process, each a real agent.

Each :class:`simulators.virtual_device.VirtualDevice` is an :class:`edge_agent.agent.Agent` built from
an ``AgentConfig`` as a device's would be (its own state dir, MQTT session and credentials); only the
source is a seeded sensor model. Nothing here publishes to MQTT itself.

Concurrency: by default one thread per agent, running ``Agent.run`` unchanged. Each loop wakes every
50 ms, which is the cost: at 1 reading/s, 200 devices took 40 % of a core and 113 MiB, 500 devices 124 %
and 232 MiB (2-core machine, local Mosquitto). With ``loops`` K, K threads of
:mod:`simulators.shared_loop` each drive a share of the devices, stepping (the agent's own step) only
those with work: see bench/simulator_scale.py and bench/RESULTS.md for what each mode sustains.

What each device committed (seq ranges per epoch, the gaps its outbox announced, what a full disk
refused and a reflash wiped) is recorded by the device (:mod:`simulators.virtual_device`): that is the
expectation file (:mod:`simulators.expectation`) an audit of Kafka is checked against.
"""

from __future__ import annotations

import dataclasses
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from simulators.expectation import Expectation
from simulators.fleet_faults import FaultSchedule
from simulators.shared_loop import SharedLoop
from simulators.virtual_device import VirtualDevice

__all__ = ["FleetOptions", "FleetTotals", "PartResult", "VirtualDevice", "device_ids", "run_part", "usage"]



class Event(Protocol):
    """A stop flag: ``threading.Event`` or ``multiprocessing.Event``."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class FleetOptions:
    url: str
    devices: int
    rate: float = 1.0  # readings per second per device
    id_prefix: str = "sim-"
    duration: float | None = None  # seconds; with events: an upper bound
    events: int = 0  # readings per device (0: until duration or a signal)
    drain: float = 30.0  # after the duration: seconds to wait, readings stopped, for the outboxes to empty
    ramp_up: float = 0.0  # seconds over which the devices are started, evenly
    seed: int = 0
    profile: str = "indoor"
    topic_prefix: str = "devices"
    username: str | None = None  # patterns: {device} is replaced by the device id
    password: str | None = None
    passwords: dict[str, str] = field(default_factory=dict)  # device -> password, wins over the pattern
    mqtt: dict[str, Any] = field(default_factory=dict)  # more [mqtt] keys: ca_file, cert_file, key_file
    state_dir: Path | None = None  # None: a temp dir removed at the end
    faults: tuple[str, ...] = ()  # kinds of simulators.fleet_faults to inject, on a seeded schedule
    fault_every: float = 30.0  # mean seconds between two faults (of each process)
    # the outboxes' overflow policy: reject_new so that a full disk (the fault) refuses new events and
    # never evicts committed ones; drop_oldest evicts them (announced as gaps, lost all the same)
    policy: Literal["reject_new", "drop_oldest"] = "reject_new"
    loops: int = 0  # 0: a thread per device; K: K shared loops per process drive the devices
    # the outboxes' SQLite sync: FULL (a device's default) fsyncs every commit, two a second per device
    # at 1 reading/s; NORMAL leaves it to the WAL checkpoints (the simulating machine losing power is not
    # what a fleet run tests; the agent's code is the same)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


def device_ids(prefix: str, n: int) -> list[str]:
    width = len(str(n))
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]


@dataclass
class FleetTotals:
    devices: int = 0
    started: int = 0
    connected: int = 0
    committed: int = 0  # readings committed to the outboxes
    receipted: int = 0  # rows deleted on a receipt
    backlog: int = 0  # rows left in the outboxes
    failed: int = 0  # agents that raised

    def __add__(self, other: FleetTotals) -> FleetTotals:
        return FleetTotals(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @classmethod
    def of(cls, fleet: list[VirtualDevice]) -> FleetTotals:
        t = cls(devices=len(fleet))
        for d in fleet:
            t.started += d.started
            t.connected += d.agent.link.current is not None
            t.committed += d.readings
            t.receipted += d.receipted
            t.backlog += d.backlog
            t.failed += d.error is not None
        return t


def usage() -> tuple[float, float]:
    """CPU seconds of this process so far, and its peak RSS in MiB."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


@dataclass
class PartResult:
    """What one process of the fleet did: its totals, what it committed, what it cost."""

    totals: FleetTotals
    expectation: Expectation
    cpu: float  # seconds
    rss: float  # peak MiB
    steps: int = 0  # agent steps the shared loops took (0: a thread per device)


def run_part(options: FleetOptions, part: tuple[int, int], stop: Event,
             report: Callable[[FleetTotals], None]) -> PartResult:
    """Run the devices of ``part`` (k, of n: every n-th device from the k-th) until ``stop``,
    ``duration``, or (with ``events``) all of them are done, calling ``report`` about once a second;
    then stop the agents (each drains as on SIGTERM) and return what they did."""
    k, n = part
    ids = device_ids(options.id_prefix, options.devices)
    state = options.state_dir or Path(tempfile.mkdtemp(prefix="edgebridge-fleet-"))
    loops = [SharedLoop(f"fleet-loop-{j}") for j in range(options.loops)]
    for loop in loops:
        loop.start()
    mine = range(k, len(ids), n)
    fleet = [VirtualDevice(ids[i], i, options, state, loops[j % len(loops)] if loops else None)
             for j, i in enumerate(mine)]
    schedule = None
    if options.faults:
        schedule = FaultSchedule(options.faults, options.fault_every, options.seed * 7919 + k, fleet,
                                 time.monotonic(), lambda line: print(line, file=sys.stderr, flush=True))
    try:
        _drive(fleet, options, stop, report, schedule)
    finally:
        if schedule is not None:
            schedule.close(time.monotonic())
        for d in fleet:
            d.stop()
        for d in fleet:
            d.join(60)
        for loop in loops:
            loop.close(60)
    totals = FleetTotals.of(fleet)
    if options.state_dir is None:
        if totals.backlog:  # events committed and not receipted: never delete them
            print(f"{totals.backlog} events still in the outboxes: kept under {state}", file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)
    cpu, rss = usage()
    expectation = Expectation.of(fleet, options.topic_prefix)
    expectation.faults = [dataclasses.asdict(f) for f in schedule.done] if schedule else []
    return PartResult(totals, expectation, cpu, rss, sum(loop.steps for loop in loops))


def _drive(fleet: list[VirtualDevice], options: FleetOptions, stop: Event,
           report: Callable[[FleetTotals], None], schedule: FaultSchedule | None = None) -> None:
    """Start the devices over the ramp-up, then report each second (and inject the scheduled
    faults) until it is time to stop."""
    began = time.monotonic()
    end = began + options.duration if options.duration else None
    step = options.ramp_up / len(fleet) if fleet else 0.0
    pending = list(fleet)
    last_report = began
    while not stop.is_set():
        now = time.monotonic()
        while pending and now >= began + step * (len(fleet) - len(pending)) and not stop.is_set():
            pending.pop(0).start()  # slow when the process is overloaded: check the time
            now = time.monotonic()
            if end is not None and now >= end:
                break
        if schedule is not None:
            schedule.tick(now)
        if now - last_report >= 1.0:
            report(FleetTotals.of(fleet))
            last_report = now
        if end is not None and now >= end:
            _drain(fleet, options, stop, report)
            return
        if options.events and not pending and all(d.done for d in fleet):
            return
        stop.wait(min(0.1, step) if pending and step else 0.1)


def _drain(fleet: list[VirtualDevice], options: FleetOptions, stop: Event,
           report: Callable[[FleetTotals], None]) -> None:
    """The run's time is up: no more readings; wait (up to ``drain`` seconds, or until a stop) for
    every started device's outbox to empty. An agent stopped while it is disconnected (a fault, a
    backoff) rightly keeps its rows for its next start, which a fleet run does not have: without this,
    what it committed last would stay on its disk and the audit would count it lost."""
    for d in fleet:
        d.finish()
    deadline = time.monotonic() + options.drain
    last_report = 0.0
    while not stop.is_set() and time.monotonic() < deadline:
        if all(not d.backlog and not d.reflashing for d in fleet):
            return
        now = time.monotonic()
        if now - last_report >= 1.0:
            report(FleetTotals.of(fleet))
            last_report = now
        stop.wait(0.1)
