"""Prometheus metrics of the agent, read at scrape time from the plain counters of each part.

The hot path only increments ints on stats objects; this collector turns them into metric families
when Prometheus scrapes, so metrics cost nothing per event. Every figure an audit needs is here:
read, committed, published, acknowledged, evicted, rejected, bad lines, reconnects, backlog, oldest
age, bytes written to disk (``/proc/self/io`` ``write_bytes``: what reached the block layer).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from edge_agent.agent import Agent

__all__ = ["AgentCollector", "register"]

P = "edgebridge_agent_"


def _disk_write_bytes() -> int | None:
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        a = self.agent
        o, f, link = a.outbox.stats, a.forwarder.stats, a.link.stats

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(P + name, doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(P + name, doc, value=value)

        read = CounterMetricFamily(P + "events_read", "Events produced by sources", labels=["source"])
        bad = CounterMetricFamily(
            P + "bad_input", "Bad lines or datagrams counted and skipped", labels=["source"]
        )
        for src in a._sources():
            read.add_metric([src.name], src.stats.read)
            bad.add_metric([src.name], src.stats.bad)
        yield read
        yield bad
        yield counter("events_committed", "Events committed to the outbox (readings and gaps)", o.committed)
        yield counter("commits", "Outbox transactions (group commits)", o.commits)
        yield counter("outbox_payload_bytes", "Payload bytes inserted into the outbox", o.payload_bytes)
        yield counter("events_published", "Events published (including resends)", f.published_events)
        yield counter(
            "messages_published", "MQTT messages published (including resends)", f.published_messages
        )
        yield counter("events_acknowledged", "Events PUBACKed by the broker", f.acked_events)
        yield counter("events_deleted", "Outbox rows deleted after a receipt (PUBACK with receipts off)",
                      o.acked)
        yield counter("receipts", "Receipts of this device and epoch applied", f.receipts)
        yield counter("events_receipted", "Published events a receipt covered", f.receipted_events)
        yield counter("receipts_ignored", "Receipts ignored: another device or epoch, malformed, "
                      "or naming seqs never assigned", f.receipts_ignored)
        yield counter("receipts_dropped", "Receipts dropped because the queue was full",
                      link.receipts_dropped)
        yield counter("events_resent", "Events published again (reconnect, or no receipt in time)",
                      f.resent_events)
        yield counter("events_evicted", "Events evicted by drop_oldest (announced as gaps)", o.evicted)
        yield counter("events_rejected", "Events refused by reject_new (announced as gaps)", o.rejected)
        yield counter("gap_events", "Gap events emitted", o.gaps)
        yield counter("outbox_quarantined", "Corrupt outbox files moved aside", o.quarantined)
        yield counter("outbox_commit_failures", "Group commits that failed (a full disk) and were retried",
                      o.commit_failures)
        yield counter("publish_refused", "PUBACKs with a failure reason code", f.refused)
        yield counter("resends", "Times events were sent again: a reconnect with messages in flight, "
                      "receipt timeouts", f.resends)
        yield counter("reconnects", "Successful MQTT connections after the first", max(0, link.connects - 1))
        yield counter("connect_failures", "Failed MQTT connection attempts", link.connect_failures)
        yield counter(
            "commands_dropped", "Commands dropped because the queue was full", link.commands_dropped
        )
        yield counter("commands_executed", "Commands executed", a.commands.executed)
        yield counter(
            "intake_blocked", "Source puts that waited on a full intake queue", a.intake.stats.blocked
        )
        yield gauge("backlog_events", "Events in the outbox", o.rows)
        yield gauge("backlog_bytes", "Payload bytes in the outbox", o.bytes)
        age = time.time() - o.oldest_ms / 1000 if o.oldest_ms is not None else 0.0
        yield gauge("oldest_event_age_seconds", "Age of the oldest event in the outbox", age)
        yield gauge("last_seq", "Last seq assigned", o.last_seq)
        yield gauge("last_ack_seq", "Highest seq acknowledged", o.last_ack_seq)
        yield gauge("inflight_messages", "Messages published and not yet PUBACKed", a.forwarder.inflight)
        yield gauge("unreceipted_events", "Events published and not yet receipted (at most "
                    "max_unreceipted)", a.forwarder.unreceipted)
        unreceipted_age = a.forwarder.oldest_unreceipted_age(time.monotonic())
        yield gauge("oldest_unreceipted_age_seconds", "Since the oldest unreceipted event was first "
                    "published", unreceipted_age or 0.0)
        last = f.last_receipt
        yield gauge("last_receipt_age_seconds", "Since the last receipt (0: none yet)",
                    time.time() - last if last else 0.0)
        yield gauge("intake_queue", "Events waiting in the intake queue", a.intake.qsize())
        yield gauge("connected", "1 while connected to the broker", 1.0 if a.link.current else 0.0)
        written = _disk_write_bytes()
        if written is not None:
            yield counter("disk_write_bytes", "Bytes this process wrote to the block layer", written)


def register(agent: Agent, registry: CollectorRegistry) -> AgentCollector:
    collector = AgentCollector(agent)
    registry.register(collector)
    return collector
