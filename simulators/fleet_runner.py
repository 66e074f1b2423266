"""A fleet over one or more processes, its live line each second and its summary.

A process carries a few hundred devices with a thread per agent, about a thousand with shared loops
(``loops``; see :mod:`simulators.fleet`); ``procs`` processes share the devices (every ``procs``-th device
from the k-th) and report their totals to this one, which prints for the whole fleet and writes the
one expectation file.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from simulators.expectation import Expectation
from simulators.fleet import Event, FleetOptions, FleetTotals, PartResult, run_part, usage

__all__ = ["run_fleet"]


class _Monitor:
    """The latest totals of each part; a line for the whole fleet once a second."""

    def __init__(self, parts: int, out: TextIO) -> None:
        self.began = time.monotonic()
        self.latest = {k: FleetTotals() for k in range(parts)}
        self.out = out
        self._last = (self.began, 0)

    def update(self, k: int, totals: FleetTotals) -> None:
        self.latest[k] = totals

    def report(self, totals: FleetTotals) -> None:
        """The report of a fleet in this process alone."""
        self.update(0, totals)
        self.tick()

    def total(self) -> FleetTotals:
        return sum(self.latest.values(), FleetTotals())

    def tick(self) -> None:
        now, (then, committed) = time.monotonic(), self._last
        if now - then < 1.0:
            return
        t = self.total()
        if not t.devices:
            return  # no process has reported yet
        rate = (t.committed - committed) / (now - then)
        print(f"[{now - self.began:6.1f} s] devices {t.started}/{t.devices} connected {t.connected} "
              f"committed {t.committed} receipted {t.receipted} backlog {t.backlog} rate {rate:.0f} ev/s",
              file=self.out, flush=True)
        self._last = (now, t.committed)


def run_fleet(options: FleetOptions, stop: Event, *, procs: int = 1, out: TextIO = sys.stderr,
              expect: Path | None = None, log_level: str = "WARNING") -> FleetTotals:
    """Run the fleet in ``procs`` processes (1: this one) until ``stop``, ``duration`` or (with
    ``events``) every device is done; print the summary to ``out``; write ``expect`` if given."""
    procs = max(1, min(procs, options.devices))
    monitor = _Monitor(procs, out)
    if procs == 1:
        results = [run_part(options, (0, 1), stop, monitor.report)]
        cpu = usage()[0]
    else:
        results = _in_processes(options, procs, stop, monitor, log_level)
        cpu = sum(r.cpu for r in results)
    elapsed = time.monotonic() - monitor.began
    totals = sum((r.totals for r in results), FleetTotals())
    totals.failed += procs - len(results)  # a process that died: its devices are unaccounted for
    steps = sum(r.steps for r in results)
    per_device = steps / max(totals.devices * elapsed, 1e-9)
    loops = (f"; {options.loops} shared loops per process, {steps} steps ({per_device:.1f} per device "
             "per second)") if options.loops else ""
    print(f"fleet summary: {totals.devices} devices in {procs} process(es) ({totals.started} started, "
          f"{totals.failed} failed), {totals.committed} readings committed, {totals.receipted} receipted, "
          f"{totals.backlog} left in the outboxes; {elapsed:.1f} s, "
          f"{totals.committed / max(elapsed, 1e-9):.1f} ev/s; cpu {100 * cpu / max(elapsed, 1e-9):.0f} % "
          f"of a core, peak rss {max(r.rss for r in results):.0f} MiB per process{loops}",
          file=out, flush=True)
    if expect is not None:
        merged = Expectation(options.topic_prefix)
        for r in results:
            merged.devices.update(r.expectation.devices)
            merged.faults.extend(r.expectation.faults)
        merged.faults.sort(key=lambda f: f["at"])
        merged.write(expect)
    return totals


def _part(options: FleetOptions, part: tuple[int, int], stop: Any, reports: Any, log_level: str) -> None:
    """A child process: its share of the devices, reporting to the parent through ``reports``."""
    from edgebridge.logs import setup_logging

    setup_logging(log_level)
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C reaches the whole process group
        signal.signal(sig, lambda *_: stop.set())
    k = part[0]
    result = run_part(options, part, stop, lambda t: reports.put(("live", k, t)))
    reports.put(("done", k, result))


def _in_processes(options: FleetOptions, procs: int, stop: Event, monitor: _Monitor,
                  log_level: str) -> list[PartResult]:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    shared_stop, reports = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_part, args=(options, (k, procs), shared_stop, reports, log_level),
                            name=f"fleet-{k}", daemon=True) for k in range(procs)]
    for child in children:
        child.start()
    results: dict[int, PartResult] = {}
    while len(results) < procs:
        if stop.is_set() and not shared_stop.is_set():
            shared_stop.set()
        try:
            kind, k, payload = reports.get(timeout=0.2)
        except queue.Empty:
            if all(c.exitcode is not None for c in children):
                break  # every child has gone; a missing result is a crashed child
        else:
            if kind == "live":
                monitor.update(k, payload)
            else:
                results[k] = payload
                monitor.update(k, payload.totals)
        monitor.tick()
    for child in children:
        child.join(10)
    return list(results.values())

