"""The agent loop: sources -> group commit into the outbox -> forwarder -> PUBACK -> receipt -> delete.

One thread (the caller's) owns the SQLite connection and the MQTT socket and runs the loop; source
threads (serial, ingest) talk to it through a bounded queue (:class:`Intake`) and wake it through a
:class:`Waker`, which the loop polls together with the broker socket (:meth:`MqttLink.poll`: paho's
callbacks run in this thread). Each iteration is a short list of steps::

    collect  -> take events from polled sources and the intake, up to commit_every_events
    commit   -> when N events are pending or T ms passed: one transaction deletes receipted rows,
                inserts the new events (seq assigned), evicts per the bound
    forward  -> the forwarder takes PUBACKs and receipts, resends what is overdue, publishes
                committed rows while the window and the bound of unreceipted events allow
    command  -> answer commands from the broker
    beat     -> heartbeat, WATCHDOG=1 when every loop progresses, STATUS= with the backlog
    wait     -> poll the broker socket and the waker: PUBACKs, commands, (re)connecting

Shutdown (``stop`` set, e.g. by SIGTERM): sources stop, what they produced is committed, the agent
spends up to ``forwarder.drain_on_stop`` seconds publishing what is left and waiting for the receipts
(PUBACKs with receipts off), commits those deletions, publishes the retained ``offline`` status and
closes. Whatever was not receipted stays in the outbox for the next start: a kill -9 at any point
loses nothing committed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson

from edge_agent.clock import Clock
from edge_agent.commands import CommandHandler
from edge_agent.config import AgentConfig
from edge_agent.forwarder import Forwarder
from edge_agent.mqtt_link import MqttLink
from edge_agent.outbox import Outbox, OutboxError
from edge_agent.sdnotify import Notifier, Watchdog
from edge_agent.sources.base import Intake, PolledSource, ThreadedSource
from edge_agent.waker import Waker
from edgebridge import __version__
from edgebridge.envelope import Event
from edgebridge.topics import (
    command_response_topic,
    commands_topic,
    events_topic,
    receipts_topic,
    status_topic,
)

__all__ = ["Agent"]

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: AgentConfig, *, notifier: Notifier | None = None) -> None:
        self.config = config
        self.clock = Clock(config.clock.trust)
        self.wake = Waker()
        self.stop_event = threading.Event()
        self._sources_stop = threading.Event()
        self.intake = Intake(config.queue_size, self.wake, self._sources_stop)
        self.outbox = Outbox(config.outbox_path, config.device_id, config.outbox, stamp=self.clock.fields)
        device, prefix = config.device_id, config.mqtt.topic_prefix
        self.topics = {
            "events": events_topic(device, prefix),
            "status": status_topic(device, prefix),
            "commands": commands_topic(device, prefix),
            "response": command_response_topic(device, prefix),
            "receipts": receipts_topic(device, prefix),
        }
        receipts = config.forwarder.receipts == "on"
        self.link = MqttLink(
            config.mqtt,
            config.forwarder,
            config.device_id,
            status_topic=self.topics["status"],
            online=self._status_payload,
            offline=orjson.dumps({"status": "offline", "deviceid": config.device_id}),
            subscribe=[self.topics["commands"], *([self.topics["receipts"]] if receipts else [])],
            receipts_topic=self.topics["receipts"] if receipts else None,
            wake=self.wake,
        )
        self.forwarder = Forwarder(self.link, config.forwarder, self.topics["events"], device)
        self.polled: list[PolledSource] = []
        self.threaded: list[ThreadedSource] = []
        self._build_sources()
        self.commands = CommandHandler(
            self.topics["response"],
            {
                "ping": lambda args: {"pong": True, "version": __version__},
                "status": lambda args: self.status(),
                "set-interval": self._set_interval,
                "flush": self._flush,
            },
        )
        self.notifier = notifier or (Notifier() if config.systemd.notify else Notifier({}))
        self.heartbeat = 0.0
        self.watchdog = Watchdog(self.notifier, self._probes(), config.systemd.stall_after)
        self._pending: list[Event] = []
        self._done: list[tuple[int, int]] = []  # receipted ranges whose deletion is not committed yet
        self._commit_failing = 0  # commits failed in a row (OutboxError: a full disk)
        self._deadline = 0.0
        self._flush_requested = False
        self._last_status = 0.0
        self.started = threading.Event()  # the outbox is open and the loop is about to run

    def _build_sources(self) -> None:
        c = self.config
        if c.simulated.enabled:
            from edge_agent.sources.simulated import SimulatedSource

            s = c.simulated
            self.polled.append(
                SimulatedSource(c.device_id, self.clock, s.sensors, s.interval, s.seed, s.limit)
            )
        if c.serial.enabled:
            from edge_agent.sources.serial_port import SerialSource

            self.threaded.append(SerialSource(c.device_id, self.clock, c.serial))
        if c.ingest.enabled:
            from edge_agent.sources.ingest import IngestSource

            self.threaded.append(IngestSource(c.device_id, self.clock, c.ingest_path, c.ingest))

    def _probes(self) -> dict[str, Any]:
        probes: dict[str, Any] = {"drain-loop": lambda: self.heartbeat}
        for src in self.threaded:
            probes[f"source:{src.name}"] = lambda src=src: src.stats.heartbeat
        return probes

    # -- lifecycle ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until :attr:`stop_event` is set; return the exit code (0 after a clean stop)."""
        self.begin()
        try:
            while not self.stop_event.is_set():
                self.step()
        except BaseException:
            self.close()
            raise
        self.finish()
        return 0

    # A loop driving many agents (the simulator's) runs the same parts: begin(), step(timeout=0) when the
    # agent's socket or waker is ready or due_at() has come, while stop_event is clear; then the steps of
    # stopping(), link.poll(0) between them, and close().

    def begin(self) -> None:
        """Open the outbox, start the sources and the link: what :meth:`run` does before its loop."""
        self.outbox.open()
        self.forwarder.start_from(self.outbox)
        try:
            self.heartbeat = time.monotonic()
            self.notifier.notify(f"READY=1\nSTATUS=outbox open, backlog {self.outbox.stats.rows}")
            for src in self.threaded:
                src.stats.heartbeat = time.monotonic()
                src.start(self.intake)
            self.link.start()
            self.started.set()
            log.info(
                "agent started", extra={"device": self.config.device_id, "backlog": self.outbox.stats.rows}
            )
        except BaseException:
            self.close()
            raise

    def finish(self) -> None:
        """The stop: drain what there is time for (see the module docstring), then close everything."""
        try:
            self._shutdown()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the sources and the link, close the outbox: the end of a run, after the stop's steps."""
        self._sources_stop.set()
        for src in self.threaded:
            src.stop()
        self.link.stop()
        self.outbox.close()
        self.notifier.close()
        self.wake.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    def step(self, timeout: float | None = None) -> None:
        """One iteration of the loop; ``timeout``: wait at most this long on the socket and the waker
        (None: until the next commit is due, at most 50 ms)."""
        self._collect()
        now = time.monotonic()
        full = len(self._pending) >= self.config.outbox.commit_every_events and not self._commit_failing
        if full or now >= self._deadline:
            self._commit(now)
        self.forwarder.collect(self.outbox)  # frees the window now; receipted rows go at the next commit
        self.forwarder.pump(self.outbox)
        self._command()
        self._beat(now)
        if timeout is None:
            self._wait()
        else:
            self.link.poll(timeout)

    def due_at(self) -> float:
        """The monotonic time from which :meth:`step` has work that neither the broker socket nor the
        waker will signal: a commit of pending events or receipted ranges, a polled source's next
        sample, the link's own timers; at most a second away (heartbeat, resends, the watchdog)."""
        due = min(self.link.due_at(), time.monotonic() + 1.0)
        if self._pending or self._done or self.forwarder.has_done:
            due = min(due, self._deadline)
        for src in self.polled:
            next_at = getattr(src, "next_at", None)
            if next_at is not None and not getattr(src, "exhausted", False):
                due = min(due, next_at)
        return due

    def _collect(self) -> None:
        room = self.config.outbox.commit_every_events - len(self._pending)
        for src in self.polled:
            if room > 0:
                got = src.poll(room)
                self._pending.extend(got)
                room -= len(got)
        if room > 0:
            self._pending.extend(self.intake.take(room))

    def _commit(self, now: float) -> None:
        self.forwarder.collect(self.outbox)
        self._done.extend(self.forwarder.take_done())
        every = self.config.outbox.commit_every_ms / 1000
        if self._pending or self._done:
            try:
                self.outbox.commit(self._pending, self._done, keep_recent=self.link.current is not None,
                                   facts=self._forwarder_facts())
            except OutboxError as exc:
                # A full disk (or a failing one): nothing of this commit was kept. The events and the
                # receipted ranges wait here for the next try, at most one commit's worth (collect stops
                # taking, the sources are held back); the forwarder goes on draining what is committed.
                if not self._commit_failing:
                    log.error("outbox commit failed: holding new events and receipts, retrying every second",
                              extra={"error": str(exc), "pending": len(self._pending)})
                self._commit_failing += 1
                every = max(every, 1.0)
            else:
                if self._commit_failing:
                    log.warning("outbox commits again", extra={"failed_commits": self._commit_failing})
                    self._commit_failing = 0
                self._pending, self._done = [], []
        self._deadline = now + every

    def _forwarder_facts(self) -> dict[str, int]:
        """What ``edgebridge agent status`` shows of the forwarder, kept with each commit."""
        f = self.forwarder
        age = f.oldest_unreceipted_age(time.monotonic())
        oldest_ms = int((time.time() - age) * 1000) if age is not None else 0
        return {"unreceipted": f.unreceipted, "resends": f.stats.resends, "oldest_unreceipted_ms": oldest_ms}

    def _command(self) -> None:
        while True:
            try:
                msg = self.link.commands.get_nowait()
            except queue.Empty:
                return
            props = getattr(msg, "properties", None)
            reply = self.commands.handle(
                bytes(msg.payload),
                getattr(props, "ResponseTopic", None),
                getattr(props, "CorrelationData", None),
            )
            self.link.publish(
                reply.topic, reply.payload, correlation=reply.correlation, content_type="application/json"
            )

    def _beat(self, now: float) -> None:
        self.heartbeat = now
        if self.watchdog.tick(now) and now - self._last_status >= 5.0:
            self._last_status = now
            s = self.outbox.stats
            self.notifier.notify(f"STATUS=backlog {s.rows} events, {s.bytes} bytes; last seq {s.last_seq}")

    def _wait(self) -> None:
        timeout = max(0.0, min(self._deadline - time.monotonic(), 0.05))
        if any(getattr(s, "interval", 1) == 0 and not getattr(s, "exhausted", False) for s in self.polled):
            # A source with more to give (interval 0: benchmarks) is polled without sleeping while the
            # broker is away, or while the forwarder keeps up (window not full, less than half a
            # commit behind: what it sends is still in the outbox's recent rows, not read back).
            # Otherwise PUBACKs come first: the loop sleeps until they arrive.
            behind = self.outbox.last_seq - self.forwarder.next_seq
            if self.link.current is None or (
                not self.forwarder.blocked and behind < self.config.outbox.commit_every_events // 2
            ):
                timeout = 0.0
        self.link.poll(timeout)

    def _shutdown(self) -> None:
        for timeout in self.stopping():
            self.link.poll(timeout)

    def stopping(self) -> Iterator[float]:
        """The stop as steps (see the module docstring): each value is how long to wait on the broker
        socket (``link.poll``) before the next step; :meth:`finish` waits here, a loop driving many
        agents waits on all their sockets at once."""
        self.notifier.notify("STOPPING=1")
        self._sources_stop.set()
        for src in self.threaded:
            src.stop()
        self._collect()
        self._commit(time.monotonic())
        deadline = time.monotonic() + self.config.forwarder.drain_on_stop
        f = self.forwarder
        while (
            (f.unreceipted or f.next_seq <= self.outbox.last_seq)
            and self.link.current is not None
            and time.monotonic() < deadline
        ):
            f.pump(self.outbox)  # what was committed last goes too, while there is time
            yield 0.05
            self._commit(time.monotonic())
        self._commit(time.monotonic())
        offline = self.link.publish(
            self.topics["status"],
            orjson.dumps({"status": "offline", "deviceid": self.config.device_id}),
            retain=True,
        )
        if offline is not None:
            end = time.monotonic() + 2.0
            while (
                time.monotonic() < end
                and self.link.current is not None
                and not any(a[1] == offline[1] for a in self.link.acks)
            ):
                yield 0.05
        log.info("agent stopped", extra={"backlog": self.outbox.stats.rows})

    # -- introspection and commands ----------------------------------------------------------------

    def _status_payload(self) -> bytes:
        return orjson.dumps(
            {
                "status": "online",
                "deviceid": self.config.device_id,
                "version": __version__,
                "bootid": self.clock.bootid,
            }
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        """The ``/healthz`` answer: healthy while the loop runs and every loop the watchdog watches
        (the drain loop, each threaded source) has shown progress within ``stall_after``; the same
        rule as ``WATCHDOG=1``. Being disconnected from the broker is not unhealthy (the outbox
        buffers), it is reported in the detail."""
        stalled = self.watchdog.stalled_now() if self.started.is_set() else ["starting"]
        if self.stop_event.is_set():
            stalled.append("stopping")
        detail = {
            "stalled": stalled,
            "connected": self.link.current is not None,
            "backlog_rows": self.outbox.stats.rows,
        }
        return not stalled, detail

    def status(self) -> dict[str, Any]:
        s, f = self.outbox.stats, self.forwarder
        oldest_age = round(time.time() - s.oldest_ms / 1000, 3) if s.oldest_ms is not None else None
        unreceipted_age = f.oldest_unreceipted_age(time.monotonic())
        last_receipt = f.stats.last_receipt
        return {
            "version": __version__,
            "epoch": self.outbox.epoch,
            "backlog_rows": s.rows,
            "backlog_bytes": s.bytes,
            "oldest_age_s": oldest_age,
            "last_seq": s.last_seq,
            "last_ack_seq": s.last_ack_seq,
            "unreceipted": f.unreceipted,
            "oldest_unreceipted_age_s": round(unreceipted_age, 3) if unreceipted_age is not None else None,
            "last_receipt_age_s": round(time.time() - last_receipt, 3) if last_receipt else None,
            "resends": f.stats.resends,
            "evicted": s.evicted,
            "connected": self.link.current is not None,
        }

    def _sources(self) -> list[PolledSource | ThreadedSource]:
        return [*self.polled, *self.threaded]

    def _set_interval(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 86400:
            raise ValueError("seconds must be a number between 0 and 86400")
        for src in self._sources():
            src.set_interval(float(seconds))
        return {"interval": float(seconds), "sources": [s.name for s in self._sources()]}

    def _flush(self, args: dict[str, Any]) -> dict[str, Any]:
        self._commit(time.monotonic())
        self.forwarder.pump(self.outbox)
        return {"committed_seq": self.outbox.last_seq, "backlog_rows": self.outbox.stats.rows}
