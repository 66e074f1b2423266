"""The enricher's Prometheus metrics, on its own registry: every count an audit of exactly-once needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edgebridge.metrics import new_registry

if TYPE_CHECKING:
    from enricher.steps import Stats

__all__ = ["EnricherMetrics"]

P = "edgebridge_enricher_"


class EnricherMetrics:
    """``prefix``: the aggregator (:mod:`enricher.aggregates`) runs the same checkpoint and rebalance
    machinery and counts under ``edgebridge_aggregator_``."""

    def __init__(self, registry: CollectorRegistry | None = None, prefix: str = P) -> None:
        P = prefix
        r = self.registry = registry if registry is not None else new_registry()
        self.consumed = Counter(P + "consumed", "Raw records consumed, counted when their transaction "
                                "commits or aborts (replays after an abort included)", registry=r)
        self.replayed = Counter(P + "consumed_aborted",
                                "Raw records consumed in transactions that were aborted (consumed again "
                                "after the rewind)", registry=r)
        self.produced = Counter(P + "produced", "Records committed, by output", ["output"], registry=r)
        self.duplicates = Counter(P + "duplicates_dropped", "Events dropped as duplicates (committed)",
                                  registry=r)
        self.late = Counter(P + "late", "Events below the top seen seq, processed and flagged", registry=r)
        self.gaps_opened = Counter(P + "gaps_opened", "Jumps in a device's seq", registry=r)
        self.gaps_closed = Counter(P + "gaps_closed", "Gaps closed by arrivals or gap events", registry=r)
        self.gaps_explained = Counter(P + "gaps_explained", "Gaps closed by an edgebridge.gap.v1 event",
                                      registry=r)
        self.seqs_expired = Counter(P + "seqs_expired", "Missing seqs given up to keep dedup state bounded",
                                    registry=r)
        self.epoch_changes = Counter(P + "epoch_changes", "Devices that lost their state: the first event of "
                                     "a new epoch after an old one (each also a device_state_lost alert)",
                                     registry=r)
        self.epochs_forgotten = Counter(P + "epochs_forgotten", "Old epochs' dedup state dropped, by reason "
                                        "(idle: past pipeline.epoch_idle_days; over_cap: too many epochs)",
                                        ["reason"], registry=r)
        self.open_gaps = Gauge(P + "open_gaps", "Open gaps of the devices of the assigned partitions",
                               registry=r)
        self.unregistered = Counter(P + "unregistered", "Events of devices not in the registry", registry=r)
        self.deadletters = Counter(P + "deadletters", "Records sent to the dead letters (committed)",
                                   ["reason"], registry=r)
        self.commits = Counter(P + "commits", "Transactions committed", registry=r)
        self.aborts = Counter(P + "aborts", "Transactions aborted (then rewound to committed offsets)",
                              ["cause"], registry=r)
        self.commit_seconds = Histogram(
            P + "commit_seconds", "Transaction commit latency (state, offsets, commit)", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.restored_devices = Counter(P + "state_restored_devices",
                                        "Device dedup states restored from the state topic", registry=r)
        self.restored_records = Counter(P + "state_restored_records",
                                        "State records read while restoring", registry=r)
        self.registry_devices = Gauge(P + "registry_devices", "Devices in the registry", registry=r)
        self.registry_updates = Counter(P + "registry_updates", "Registry records applied", registry=r)
        self.lag = Gauge(P + "consumer_lag", "Records behind the end of the raw partition", ["partition"],
                         registry=r)
        self.assigned = Gauge(P + "assigned_partitions", "Raw partitions assigned", registry=r)

    def steps_committed(self, s: Stats, open_gaps: int) -> None:
        """The step counts of a committed transaction, and the open gaps after it."""
        self.duplicates.inc(s.duplicates)
        self.late.inc(s.late)
        self.gaps_opened.inc(s.gaps_opened)
        self.gaps_closed.inc(s.gaps_closed)
        self.gaps_explained.inc(s.gaps_explained)
        self.seqs_expired.inc(s.seqs_expired)
        self.unregistered.inc(s.unregistered)
        self.epoch_changes.inc(s.epoch_changes)
        self.epochs_forgotten.labels("idle").inc(s.epochs_forgotten_idle)
        self.epochs_forgotten.labels("over_cap").inc(s.epochs_forgotten_over_cap)
        self.open_gaps.set(open_gaps)
