"""Seeded faults for ``edgebridge demo --chaos``: kill -9 of any component, broker crashes and freezes.

A :class:`Chaos` schedule spreads ``rounds`` faults over the expected length of the run, each drawn
(with a seeded :class:`random.Random`, so a run can be repeated) from:

- ``kill -9`` of the bridge, the enricher, the aggregator, or one agent, restarted at once;
- ``kill -9`` of Mosquitto, restarted after a short pause (what it acknowledged since its last
  autosave is gone: the agents' receipts make up for it);
- Kafka frozen (SIGSTOP) for 5-20 s, then continued (a broker that hangs without closing sockets);
- ``kill -9`` of Kafka, restarted.

Between faults :meth:`Chaos.tick` also supervises: a component that exited is restarted, as systemd
or compose would (an enricher or aggregator fenced after a Kafka fault exits by design). Every fault
and restart is logged with its time, so the audit at the end can be read against it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgebridge.devbrokers import LocalBrokers
from simulators.processes import ComponentProcess

__all__ = ["FAULTS", "Chaos", "Fault"]

# the aggregator's kill last: a schedule of six rounds or fewer draws what it drew before it was added
FAULTS = ("kill-bridge", "kill-enricher", "kill-agent", "kill-mosquitto", "freeze-kafka", "kill-kafka",
          "kill-aggregator")


@dataclass
class Fault:
    at: float  # seconds into the run
    kind: str
    detail: str = ""


@dataclass
class Chaos:
    """``rounds`` faults over ``span`` seconds; call :meth:`tick` about once a second."""

    brokers: LocalBrokers
    bridge: ComponentProcess
    enricher: ComponentProcess
    aggregator: ComponentProcess
    agents: list[ComponentProcess]
    rounds: int
    span: float
    seed: int
    on_agent_killed: Callable[[ComponentProcess], None] = lambda agent: None
    log: list[Fault] = field(default_factory=list)
    restarts: list[Fault] = field(default_factory=list)
    _schedule: list[tuple[float, str]] = field(default_factory=list)
    _thaw_at: float | None = None
    _began: float = 0.0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._rng = rng
        step = self.span / (self.rounds + 1)
        # every kind at least once when there are enough rounds, the rest drawn; jittered times
        kinds = list(FAULTS)[: self.rounds] + [rng.choice(FAULTS) for _ in range(self.rounds - len(FAULTS))]
        rng.shuffle(kinds)
        self._schedule = [(step * (i + 1) + rng.uniform(-step / 3, step / 3), kind)
                          for i, kind in enumerate(kinds)]
        self._began = time.monotonic()

    @property
    def done(self) -> bool:
        return not self._schedule and self._thaw_at is None

    def tick(self) -> list[Fault]:
        """Inject what is due, thaw a frozen Kafka when its time comes, restart what exited."""
        now = time.monotonic() - self._began
        happened: list[Fault] = []
        if self._thaw_at is not None and now >= self._thaw_at:
            self.brokers.kafka.resume()
            self._thaw_at = None
            happened.append(self._note(now, "thaw-kafka"))
        while self._schedule and self._schedule[0][0] <= now and self._thaw_at is None:
            _, kind = self._schedule.pop(0)
            happened.append(self._inject(now, kind))
        if self._thaw_at is None:  # a frozen Kafka makes the enricher exit on purpose only once thawed
            self._supervise(now)
        return happened

    def finish(self) -> None:
        """Leave every broker running and every component up (e.g. before the final drain)."""
        if self._thaw_at is not None:
            self.brokers.kafka.resume()
            self._thaw_at = None
        self._schedule = []

    def _note(self, now: float, kind: str, detail: str = "") -> Fault:
        fault = Fault(round(now, 1), kind, detail)
        self.log.append(fault)
        return fault

    def _inject(self, now: float, kind: str) -> Fault:
        rng = self._rng
        if kind == "kill-bridge":
            self.bridge.kill()
            self.bridge.start()
        elif kind == "kill-enricher":
            self.enricher.kill()
            self.enricher.start()
        elif kind == "kill-aggregator":
            self.aggregator.kill()
            self.aggregator.start()
        elif kind == "kill-agent":
            agent = rng.choice(self.agents)
            agent.kill()
            self.on_agent_killed(agent)
            agent.start()
            return self._note(now, kind, agent.name)
        elif kind == "kill-mosquitto":
            self.brokers.mosquitto.kill()
            time.sleep(rng.uniform(0.5, 3.0))
            self.brokers.mosquitto.start()
        elif kind == "freeze-kafka":
            seconds = rng.uniform(5.0, 20.0)
            self.brokers.kafka.pause()
            self._thaw_at = now + seconds
            return self._note(now, kind, f"{seconds:.0f} s")
        elif kind == "kill-kafka":
            self.brokers.kafka.kill()
            self.brokers.kafka.start()
        else:
            raise ValueError(f"unknown fault {kind!r}")
        return self._note(now, kind)

    def _supervise(self, now: float) -> None:
        for proc in (self.bridge, self.enricher, self.aggregator, *self.agents):
            if proc.proc is not None and not proc.running and proc.proc.returncode != 0:
                self.restarts.append(Fault(round(now, 1), f"restart-{proc.name}",
                                           f"exit {proc.proc.returncode}"))
                proc.start()
