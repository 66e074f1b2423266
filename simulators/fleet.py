"""`edgebridge simulate fleet`: N virtual devices in one process, each a real agent.

Each :class:`VirtualDevice` is an :class:`edge_agent.agent.Agent` built from an ``AgentConfig`` as a
device's would be: its own state dir (outbox, seqs, epoch), its own MQTT session (client id = device id)
and credentials, receipts on. Only the source differs: a :class:`simulators.profile_source.ProfileSource`
(a seeded sensor model) in place of the configured ones. Nothing here publishes to MQTT itself.

Concurrency: one thread per agent, running ``Agent.run`` unchanged (no fork of the agent's logic). Each
loop wakes every 50 ms, which is the cost: at 1 reading/s, 200 devices took 40 % of a core and 113 MiB,
500 devices 124 % and 232 MiB (2-core machine, local Mosquitto). More devices need more processes
(:mod:`simulators.fleet_runner`), or a shared loop stepping only devices with work (not built).

What each device committed (seq ranges per epoch, and the gaps its outbox announced) is recorded by an
observer around its outbox's ``commit`` (the agent's code is not changed): that is the expectation
file (:mod:`simulators.expectation`) an audit of Kafka is checked against.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edgebridge.config import load_config
from edgebridge.receipts import merge_ranges
from simulators.expectation import Expectation
from simulators.fleet_faults import FaultSchedule
from simulators.profile_source import ProfileSource
from simulators.sensors import sensor

__all__ = ["FleetOptions", "FleetTotals", "PartResult", "VirtualDevice", "device_ids", "run_part", "usage"]

log = logging.getLogger(__name__)


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


def device_ids(prefix: str, n: int) -> list[str]:
    width = len(str(n))
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]


class VirtualDevice:
    """One agent on its own thread, and the record of what its outbox committed."""

    def __init__(self, device: str, index: int, options: FleetOptions, state: Path) -> None:
        self.device = device
        o = options
        overrides: dict[str, Any] = {
            "device_id": device,
            "state_dir": str(state / device),
            "mqtt.url": o.url,
            "mqtt.topic_prefix": o.topic_prefix,
            "forwarder.receipts": "on",
            "metrics.enabled": False,
            "systemd.notify": False,
            **{f"mqtt.{k}": v for k, v in o.mqtt.items()},
        }
        if o.username:
            overrides["mqtt.username"] = o.username.format(device=device)
        password = o.passwords.get(device) or (o.password.format(device=device) if o.password else None)
        if password:
            overrides["mqtt.password"] = password
        config = load_config(AgentConfig, overrides=overrides, env={})
        self.agent = Agent(config)
        model = sensor(o.profile, o.seed * 1_000_003 + index)
        self.source = ProfileSource(device, self.agent.clock, model, 1.0 / o.rate, o.events)
        self.agent.polled[:] = [self.source]
        self.readings = 0  # readings committed in this run
        self.committed: list[tuple[int, int]] = []  # seq ranges committed in this run (gap events too)
        self.gaps: list[tuple[int, int]] = []  # seq ranges the outbox announced as lost
        self._observe_commits()
        self.thread = threading.Thread(target=self._run, name=device, daemon=True)
        self.error: BaseException | None = None

    def _observe_commits(self) -> None:
        outbox = self.agent.outbox
        commit = outbox.commit

        def observed(events: Any = (), *args: Any, **kwargs: Any) -> Any:
            before = outbox.last_seq
            result = commit(events, *args, **kwargs)  # raises on failure: nothing was committed
            if outbox.last_seq > before:
                self.committed = merge_ranges([*self.committed, (before + 1, outbox.last_seq)])
            self.readings += len(events)
            self.gaps.extend((g.data["first"], g.data["last"]) for g in result.gaps)
            return result

        outbox.commit = observed  # type: ignore[method-assign]

    def _run(self) -> None:
        try:
            self.agent.run()
        except BaseException as exc:  # reported in the summary; the other devices go on
            self.error = exc
            log.exception("virtual device failed", extra={"device": self.device})

    @property
    def done(self) -> bool:
        """Every reading asked for was committed and receipted (the outbox is empty)."""
        s = self.source
        return s.exhausted and self.readings >= s.limit and not self.agent.outbox.stats.rows

    def epoch(self) -> str:
        return self.agent.outbox.epoch or ""


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
            started = d.agent.started.is_set()
            t.started += started
            t.connected += d.agent.link.current is not None
            t.committed += d.readings
            t.receipted += d.agent.outbox.stats.acked if started else 0
            t.backlog += d.agent.outbox.stats.rows if started else 0
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


def run_part(options: FleetOptions, part: tuple[int, int], stop: Event,
             report: Callable[[FleetTotals], None]) -> PartResult:
    """Run the devices of ``part`` (k, of n: every n-th device from the k-th) until ``stop``,
    ``duration``, or (with ``events``) all of them are done, calling ``report`` about once a second;
    then stop the agents (each drains as on SIGTERM) and return what they did."""
    k, n = part
    ids = device_ids(options.id_prefix, options.devices)
    state = options.state_dir or Path(tempfile.mkdtemp(prefix="edgebridge-fleet-"))
    fleet = [VirtualDevice(ids[i], i, options, state) for i in range(k, len(ids), n)]
    schedule = None
    if options.faults:
        schedule = FaultSchedule(options.faults, options.fault_every, options.seed * 7919 + k, fleet,
                                 time.monotonic(), lambda line: print(line, file=sys.stderr, flush=True))
    try:
        _drive(fleet, options, stop, report, schedule)
    finally:
        if schedule is not None:
            schedule.close()
        for d in fleet:
            d.agent.stop()
        for d in fleet:
            if d.thread.ident is not None:
                d.thread.join(60)
    totals = FleetTotals.of(fleet)
    if options.state_dir is None:
        if totals.backlog:  # events committed and not receipted: never delete them
            print(f"{totals.backlog} events still in the outboxes: kept under {state}", file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)
    cpu, rss = usage()
    expectation = Expectation.of(fleet, options.topic_prefix)
    expectation.faults = [dataclasses.asdict(f) for f in schedule.done] if schedule else []
    return PartResult(totals, expectation, cpu, rss)


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
            pending.pop(0).thread.start()  # slow when the process is overloaded: check the time
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
        d.source.finish()
    deadline = time.monotonic() + options.drain
    last_report = 0.0
    while not stop.is_set() and time.monotonic() < deadline:
        if all(not d.agent.outbox.stats.rows for d in fleet if d.agent.started.is_set()):
            return
        now = time.monotonic()
        if now - last_report >= 1.0:
            report(FleetTotals.of(fleet))
            last_report = now
        stop.wait(0.1)
