"""One virtual device of a fleet: a real :class:`edge_agent.agent.Agent`, and the record of its lives.

The agent is built from an ``AgentConfig`` as a device's would be: its own state dir (outbox, seqs,
epoch), its own MQTT session (client id = device id) and credentials, receipts on. Only the source
differs: a :class:`simulators.profile_source.ProfileSource` (a seeded sensor model) in place of the
configured ones. Nothing here publishes to MQTT itself.

What each life of the device (an epoch of its outbox) committed is recorded by an observer around the
outbox's ``commit`` (the agent's code is not changed): the seq ranges committed (readings and gap events),
the ranges announced as lost (gap events), the seqs refused by a full disk (``reject_new`` burns them:
never committed, so never expected downstream) and, when the device is reflashed, the rows still in its
outbox when its state dir was wiped (committed, maybe already in Kafka, maybe not: lost by the device).

Two faults act on the device itself (:mod:`simulators.fleet_faults`):

- a full disk: the free space the outbox's free-disk guard reads is 0 (a simulated per-device disk: a
  real small file system per virtual device needs root and a mount each). The agent's own guard and its
  ``reject_new`` policy then refuse new events, counted and announced as a ``rejected`` gap once room
  is back; what was committed stays and keeps draining.
- a reflash: the agent is stopped as on SIGTERM (it drains what it can for ``drain_on_stop``), its state
  dir is wiped, and a new agent starts in it: a new epoch, seqs from 1 again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edge_agent.outbox import bound
from edgebridge.config import load_config
from edgebridge.receipts import merge_ranges
from simulators.profile_source import ProfileSource
from simulators.sensors import sensor

if TYPE_CHECKING:
    from simulators.fleet import FleetOptions
    from simulators.shared_loop import SharedLoop

__all__ = ["Life", "VirtualDevice"]

log = logging.getLogger(__name__)

Ranges = list[tuple[int, int]]


@dataclass
class Life:
    """What one epoch of a device's outbox did in the run (inclusive seq ranges)."""

    committed: Ranges = field(default_factory=list)  # inserted: readings and gap events
    gaps: Ranges = field(default_factory=list)  # announced lost by gap events (evicted, rejected, ...)
    refused: Ranges = field(default_factory=list)  # burnt by reject_new (a full disk): never committed
    wiped: Ranges = field(default_factory=list)  # still in the outbox when a reflash wiped it

    def as_dict(self) -> dict[str, Ranges]:
        return {"committed": self.committed, "gaps": merge_ranges(self.gaps), "refused": self.refused,
                "wiped": self.wiped}


class VirtualDevice:
    """One agent, on its own thread or driven by a :class:`~simulators.shared_loop.SharedLoop`, and the
    record of what each of its lives committed."""

    def __init__(self, device: str, index: int, options: FleetOptions, state: Path,
                 loop: SharedLoop | None = None) -> None:
        self.device, self.index, self.options, self.loop = device, index, options, loop
        self.state = state / device
        self.lives: dict[str, Life] = {}  # epoch -> its record, in the order of the device's lives
        self.readings = 0  # readings committed in this run (all lives)
        self.produced = 0  # readings the sources gave the outbox (committed or refused)
        self.refused = 0  # readings refused by a full disk
        self.disk_full = False  # the fault: the outbox's free-disk guard reads 0 bytes free
        self.error: BaseException | None = None
        self.reflashes = 0
        self._receipted_before = 0  # rows receipted by the lives before this one
        self._lock = threading.Lock()  # the swap of agent and source at a reflash, against stop/finish
        self._finished = self._stopping = False
        self._reflash: threading.Thread | None = None
        self._launched = False
        self._boot(skew=0.0, interval=1.0 / options.rate, limit=options.events)

    def _boot(self, *, skew: float, interval: float, limit: int) -> None:
        o, device = self.options, self.device
        overrides: dict[str, Any] = {
            "device_id": device,
            "state_dir": str(self.state),
            "mqtt.url": o.url,
            "mqtt.topic_prefix": o.topic_prefix,
            "forwarder.receipts": "on",
            "outbox.policy": o.policy,
            "outbox.synchronous": o.synchronous,
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
        agent = Agent(config)
        # the outbox's one question to the disk, answered by this device's simulated disk during the fault
        agent.outbox._free_bytes = lambda folder: 0 if self.disk_full else bound.free_bytes(folder)
        model = sensor(o.profile, o.seed * 1_000_003 + self.index)
        source = ProfileSource(device, agent.clock, model, interval, limit)
        source.skew = skew
        if self._finished:
            source.finish()
        agent.polled[:] = [source]
        self._observe_commits(agent)
        self.agent, self.source = agent, source
        self.gone = threading.Event()  # this life's agent has finished (or failed)
        self.thread = threading.Thread(target=self._run, args=(agent, self.gone), name=device, daemon=True)

    def _observe_commits(self, agent: Agent) -> None:
        outbox = agent.outbox
        commit = outbox.commit

        def observed(events: Any = (), *args: Any, **kwargs: Any) -> Any:
            before = outbox.last_seq
            result = commit(events, *args, **kwargs)  # raises on failure: nothing was committed
            life = self.lives.setdefault(outbox.epoch or "", Life())
            # reject_new burns the refused events' seqs last, after the pending gaps and the accepted
            end = outbox.last_seq - result.rejected
            if end > before:
                life.committed = merge_ranges([*life.committed, (before + 1, end)])
            if result.rejected:
                life.refused = merge_ranges([*life.refused, (end + 1, outbox.last_seq)])
            self.produced += len(events)
            self.readings += len(events) - result.rejected
            self.refused += result.rejected
            life.gaps.extend((g.data["first"], g.data["last"]) for g in result.gaps)
            return result

        outbox.commit = observed  # type: ignore[method-assign]

    def _run(self, agent: Agent, gone: threading.Event) -> None:
        try:
            agent.run()
        except BaseException as exc:
            self._exited(gone, exc)
        else:
            self._exited(gone, None)

    def _exited(self, gone: threading.Event, error: BaseException | None) -> None:
        if error is not None:  # reported in the summary; the other devices go on
            self.error = error
            log.error("virtual device failed", exc_info=error, extra={"device": self.device})
        gone.set()

    def _launch(self) -> None:
        if self.loop is None:
            self.thread.start()
        else:
            gone = self.gone
            self.loop.add(self.agent, lambda error: self._exited(gone, error))
        self._launched = True

    # -- lifecycle, from the fleet's driving thread ------------------------------------------------------

    def start(self) -> None:
        self._launch()

    def finish(self) -> None:
        """No reading from now on, in this life or a next one."""
        with self._lock:
            self._finished = True
            self.source.finish()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self.agent.stop()

    def join(self, timeout: float) -> None:
        if self._reflash is not None:
            self._reflash.join(timeout)
        if self._launched:
            self.gone.wait(timeout)

    def reflash(self) -> bool:
        """Start a reflash in the background (False: one is still going on)."""
        if self.reflashing:
            return False
        self._reflash = threading.Thread(target=self._reflash_now, name=f"{self.device}-reflash", daemon=True)
        self._reflash.start()
        return True

    @property
    def reflashing(self) -> bool:
        return self._reflash is not None and self._reflash.is_alive()

    def _reflash_now(self) -> None:
        old_agent, old_source, old_gone = self.agent, self.source, self.gone
        old_agent.stop()  # drains as on SIGTERM, up to forwarder.drain_on_stop
        old_gone.wait()
        epoch = old_agent.outbox.epoch or ""
        path = old_agent.config.outbox_path
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            held = [seq for (seq,) in db.execute("SELECT seq FROM outbox")]
        self.lives.setdefault(epoch, Life()).wiped = merge_ranges((seq, seq) for seq in held)
        with self._lock:
            if self._stopping:  # the run ended meanwhile: the device stays as it was
                return
            self._receipted_before += old_agent.outbox.stats.acked
            shutil.rmtree(self.state)
            limit = max(0, old_source.limit - old_source.stats.read) if old_source.limit else 0
            self._boot(skew=old_source.skew, interval=old_source.interval, limit=limit)
            self.reflashes += 1
            self._launch()
        log.warning("virtual device reflashed", extra={"device": self.device, "old_epoch": epoch,
                                                       "wiped": len(held)})

    # -- what the fleet reads --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.agent.started.is_set()

    @property
    def done(self) -> bool:
        """Every reading asked for was committed (or refused) and receipted (the outbox is empty)."""
        s = self.source
        return (s.exhausted and not self.reflashing and self.produced >= self.options.events
                and not self.agent.outbox.stats.rows)

    @property
    def receipted(self) -> int:
        return self._receipted_before + (self.agent.outbox.stats.acked if self.started else 0)

    @property
    def backlog(self) -> int:
        return self.agent.outbox.stats.rows if self.started else 0

    def epoch(self) -> str:
        return self.agent.outbox.epoch or ""
