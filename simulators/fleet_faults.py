"""Faults on a schedule for a fleet (`edgebridge simulate fleet --faults KINDS --fault-every SECONDS`).

Seeded (``--seed`` and the process's share), one fault about every ``every`` seconds (0.5x to 1.5x),
the kinds taken in a shuffled order, every kind once per round (so a run of ``len(kinds)`` faults has
each), logged with its time on stderr and kept in the expectation file,
so that an audit can be read against it. Each acts on the devices of this process:

- ``disconnect``: a storm: a tenth of the devices (at least one) drop their MQTT connection at once and
  come back after their backoff (:meth:`MqttLink.reconnect` sets a flag the agent's own loop acts on).
- ``burst``: a tenth of the devices read ten times faster for 5 s.
- ``clock``: one device's readings are stamped 3 hours ahead from now on (a clock gone wrong; the
  events stay valid and must be processed like any other).
- ``malformed``: a separate client with one device's credentials publishes on its events topic, QoS 1,
  a payload that is not an event (bytes, cut JSON, an empty batch, a batch nested 301 deep): the bridge
  must dead-letter each and go on.
- ``duplicate``: the oldest row of one device's outbox (sent, most likely, and waiting for its receipt)
  is published again, byte for byte, from a separate client: the enricher must drop it as a duplicate.

- ``reflash``: one device is stopped as on SIGTERM (it drains for ``drain_on_stop``), its state dir is
  wiped and a new agent starts in it: a new epoch, seqs from 1 again. The enricher keeps both lives.
- ``diskfull``: one device's disk is full for 5 s (a simulated per-device disk: the free space its
  outbox's free-disk guard reads is 0, see :mod:`simulators.virtual_device`); ``reject_new`` refuses the
  new events, counted, and announces them as a ``rejected`` gap once room is back. A second line says,
  when the disk has room again, how many events it refused.

What the audit expects follows the device's own record, not the schedule: the malformed payloads are not
events of the device, a duplicate must appear once, skewed and burst readings are committed events like
the others; both epochs of a reflashed device are expected (the rows still in its outbox when it was
wiped, if any, are listed as ``wiped``: lost if they never arrived); events refused by a full disk are
never committed, so never expected.
"""

from __future__ import annotations

import logging
import random
import select
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from edgebridge.mqtt.client import FastClient
from edgebridge.topics import events_topic
from simulators.hostile import NESTED_BATCH

if TYPE_CHECKING:
    from simulators.fleet import VirtualDevice

__all__ = ["KINDS", "Fault", "FaultSchedule", "parse_kinds"]

log = logging.getLogger(__name__)

KINDS = ("disconnect", "burst", "clock", "malformed", "duplicate", "reflash", "diskfull")
MALFORMED = (b"\x00\xffnot an event", b'{"specversion": "1.0", "type": "edgebridge.reading.v1", "data": {',
             b"[]", NESTED_BATCH)
BURST_SECONDS, BURST_FACTOR = 5.0, 10.0
SKEW_SECONDS = 3 * 3600.0
DISKFULL_SECONDS = 5.0


def parse_kinds(text: str) -> tuple[str, ...]:
    """``all`` or a comma list of :data:`KINDS`."""
    kinds = KINDS if text == "all" else tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {unknown or text!r}; choose from {', '.join(KINDS)} or all")
    return kinds


@dataclass(frozen=True)
class Fault:
    at: float  # seconds since the fleet started
    kind: str
    devices: tuple[str, ...]
    detail: str = ""

    def line(self) -> str:
        detail = f" {self.detail}" if self.detail else ""
        return f"[{self.at:6.1f} s] fault {self.kind}: {', '.join(self.devices)}{detail}"


class FaultSchedule:
    """The faults of one process's devices; :meth:`tick` from the fleet's driving loop."""

    def __init__(self, kinds: Sequence[str], every: float, seed: int, fleet: list[VirtualDevice],
                 began: float, out: Callable[[str], None]) -> None:
        self.kinds, self.every, self.fleet = tuple(kinds), every, fleet
        self.rng = random.Random(seed)
        self.began, self.out = began, out
        self.next_at = began + self._gap()
        self.done: list[Fault] = []
        self._bursts: list[tuple[float, VirtualDevice, float]] = []  # (end, device, its interval)
        self._full: list[tuple[float, VirtualDevice, int]] = []  # (end, device, refused before)
        self._round: list[str] = []  # the kinds still to come in this round

    def _gap(self) -> float:
        return self.every * self.rng.uniform(0.5, 1.5)

    def tick(self, now: float) -> None:
        for burst in [b for b in self._bursts if now >= b[0]]:
            self._bursts.remove(burst)
            burst[1].source.set_interval(burst[2])
        for full in [f for f in self._full if now >= f[0]]:
            self._full.remove(full)
            self._room_again(full, now)
        if now < self.next_at:
            return
        self.next_at = now + self._gap()
        live = [d for d in self.fleet if d.started and d.error is None and not d.reflashing]
        if not live:
            return
        if not self._round:
            self._round = self.rng.sample(self.kinds, len(self.kinds))
        kind = self._round.pop()
        fault = getattr(self, f"_{kind}")(live, now)
        self.done.append(fault)
        self.out(fault.line())

    def close(self, now: float) -> None:
        """End the bursts and full disks still going on."""
        for _, device, interval in self._bursts:
            device.source.set_interval(interval)
        self._bursts.clear()
        for full in self._full:
            self._room_again(full, now)
        self._full.clear()

    def _room_again(self, full: tuple[float, VirtualDevice, int], now: float) -> None:
        _, device, before = full
        device.disk_full = False
        refused = device.refused - before
        self.out(f"[{now - self.began:6.1f} s] fault diskfull over: {device.device} has room again, "
                 f"{refused} events refused")

    def _some(self, live: list[VirtualDevice]) -> list[VirtualDevice]:
        return self.rng.sample(live, max(1, len(live) // 10))

    def _fault(self, kind: str, devices: Sequence[VirtualDevice], now: float, detail: str = "") -> Fault:
        return Fault(round(now - self.began, 1), kind, tuple(d.device for d in devices), detail)

    # -- the kinds ------------------------------------------------------------------------------------
    def _disconnect(self, live: list[VirtualDevice], now: float) -> Fault:
        chosen = self._some(live)
        for d in chosen:
            d.agent.link.reconnect()
            d.agent.wake.set()
        return self._fault("disconnect", chosen, now)

    def _burst(self, live: list[VirtualDevice], now: float) -> Fault:
        chosen = [d for d in self._some(live) if all(b[1] is not d for b in self._bursts)]
        for d in chosen:
            self._bursts.append((now + BURST_SECONDS, d, d.source.interval))
            d.source.set_interval(d.source.interval / BURST_FACTOR)
        return self._fault("burst", chosen, now, f"x{BURST_FACTOR:.0f} for {BURST_SECONDS:.0f} s")

    def _clock(self, live: list[VirtualDevice], now: float) -> Fault:
        device = self.rng.choice(live)
        device.source.skew = SKEW_SECONDS
        return self._fault("clock", [device], now, f"+{SKEW_SECONDS / 3600:.0f} h")

    def _malformed(self, live: list[VirtualDevice], now: float) -> Fault:
        device = self.rng.choice(live)
        payload = self.rng.choice(MALFORMED)
        ok = _publish(device, payload)
        return self._fault("malformed", [device], now, f"{len(payload)} bytes{'' if ok else ' (not sent)'}")

    def _duplicate(self, live: list[VirtualDevice], now: float) -> Fault:
        candidates = self.rng.sample(live, min(5, len(live)))
        for device in candidates:  # the first whose outbox holds a row (receipts empty them quickly)
            path = device.agent.config.state_dir / "outbox.db"
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:  # WAL: a reader beside
                row = db.execute("SELECT seq, payload FROM outbox ORDER BY seq LIMIT 1").fetchone()
            if row is not None:
                ok = _publish(device, bytes(row[1]))
                return self._fault("duplicate", [device], now, f"seq {row[0]}{'' if ok else ' (not sent)'}")
        return self._fault("duplicate", candidates[:1], now, "(outboxes empty, nothing sent)")

    def _reflash(self, live: list[VirtualDevice], now: float) -> Fault:
        device = self.rng.choice(live)
        epoch = device.epoch()
        device.reflash()
        return self._fault("reflash", [device], now, f"epoch {epoch} wiped")

    def _diskfull(self, live: list[VirtualDevice], now: float) -> Fault:
        device = self.rng.choice([d for d in live if not d.disk_full] or live)
        device.disk_full = True
        self._full.append((now + DISKFULL_SECONDS, device, device.refused))
        return self._fault("diskfull", [device], now, f"for {DISKFULL_SECONDS:.0f} s")


def _publish(device: VirtualDevice, payload: bytes, timeout: float = 10.0) -> bool:
    """One QoS 1 publish on the device's events topic with its credentials, from a client of its own
    (another client id: the device's session stays the agent's); True once the broker acknowledged.

    The client is driven here with ``poll``, not by paho's loop thread: paho waits in ``select()``,
    which refuses descriptors past 1023, and a process of a thousand devices holds ~6,000."""
    settings = device.agent.config.mqtt
    client = FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device.device}-fault",
                        protocol=mqtt.MQTTv5)
    settings.authenticate(client)
    try:
        client.connect(settings.host, settings.port, keepalive=30)
        sock = client.socket()
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        info = client.publish(events_topic(device.device, settings.topic_prefix), payload, qos=1)
        deadline = time.monotonic() + timeout
        while not info.is_published() and time.monotonic() < deadline and client.socket() is not None:
            poller.modify(sock, select.POLLIN | (select.POLLOUT if client.want_write() else 0))
            poller.poll(100)
            client.loop_read()
            if client.want_write():
                client.loop_write()
            client.loop_misc()
        return info.is_published()
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("fault publish failed", extra={"device": device.device, "error": str(exc)})
        return False
    finally:
        client.disconnect()
        if client.want_write() and client.socket() is not None:
            client.loop_write()
        client.close_sockets()  # now, not at garbage collection
