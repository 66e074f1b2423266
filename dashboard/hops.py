"""The pipeline's figures by hop, named: what an operator reads first on the pipeline page.

Each figure is read where it already lives, never from a store of the dashboard's own:

- edge: events committed to the agents' outboxes, and receipted (Kafka holds them), from the agents'
  endpoints (``edgebridge_agent_events_committed_total``, ``..._events_receipted_total``);
- bridge: valid events confirmed in the raw topic (``edgebridge_bridge_events_total``);
- raw, processed: the topics' end offsets in Kafka (records, and transaction markers for processed);
- sinks: rows written (``edgebridge_sink_written_total``);
- duplicates dropped and open gaps, from the enricher (``edgebridge_enricher_duplicates_dropped_total``,
  ``edgebridge_enricher_open_gaps``);
- transaction commit latency, from the enricher's histogram ``edgebridge_enricher_commit_seconds``:
  the mean and the 95th percentile's bucket over the last look (the differences of the cumulative
  counts), or over the process's life when no transaction committed since.

A metric reported by several endpoints (many agents, bridge replicas, enricher instances) is summed.
A figure no configured endpoint reports says so, with the metric it needs.
"""

from __future__ import annotations

import math

from dashboard.pipeline_view import Hop, MetricSample, TopicRate

__all__ = ["commit_latency", "hop_figures"]

COMMIT = "edgebridge_enricher_commit_seconds"


def _summed(metrics: list[MetricSample], name: str, labels: str | None = None
            ) -> tuple[float | None, float | None]:
    """The value and the rate of ``name`` summed over endpoints (and label sets unless given)."""
    found = [m for m in metrics if m.name == name and (labels is None or m.labels == labels)]
    if not found:
        return None, None
    rates = [m.rate for m in found]
    return sum(m.value for m in found), (None if None in rates else sum(r for r in rates if r is not None))


def _count(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _metric_hop(key: str, label: str, metrics: list[MetricSample], name: str) -> Hop:
    value, rate = _summed(metrics, name)
    source = f"{name} ({'not reported by any [sources] metrics endpoint' if value is None else 'metrics'})"
    return Hop(key, label, rate, _count(value), source)


def _topic_hop(key: str, label: str, topics: list[TopicRate], role: str) -> Hop:
    topic = next((t for t in topics if t.role == role), None)
    if topic is None or topic.end is None:
        return Hop(key, label, None, "", f"Kafka: {topic.topic if topic else role} not readable")
    return Hop(key, label, topic.rate, _count(topic.end), f"Kafka: {topic.topic} end offsets")


def commit_latency(metrics: list[MetricSample]) -> str:
    """``mean 12 ms, p95 <= 25 ms`` over the last look, else over the enricher's life; "" if none."""
    count, count_rate = _summed(metrics, COMMIT + "_count")
    total, sum_rate = _summed(metrics, COMMIT + "_sum")
    if not count or total is None:
        return ""
    buckets: dict[float, tuple[float, float | None]] = {}
    for m in metrics:
        if m.name == COMMIT + "_bucket":
            le = dict(part.split("=", 1) for part in m.labels.split(",") if "=" in part).get("le", "")
            upper = math.inf if le == "+Inf" else float(le)
            held = buckets.get(upper, (0.0, 0.0))
            rate = None if held[1] is None or m.rate is None else held[1] + m.rate
            buckets[upper] = (held[0] + m.value, rate)
    n, spent, over = count, total, "the enricher's life"
    cumulative = {b: v for b, (v, _) in buckets.items()}
    if count_rate and sum_rate is not None and all(r is not None for _, r in buckets.values()):
        # transactions committed since the previous look: the figure of now, not of the whole life
        n, spent, over = count_rate, sum_rate, "the last look"
        cumulative = {b: r or 0.0 for b, (_, r) in buckets.items()}
    p95 = next((b for b in sorted(cumulative) if cumulative[b] >= 0.95 * n), None)
    bound = ""
    if p95 is not None:
        bound = ", p95 above the top bucket" if math.isinf(p95) else f", p95 <= {p95 * 1000:g} ms"
    return f"mean {spent / n * 1000:.1f} ms{bound} ({over})"


def hop_figures(topics: list[TopicRate], metrics: list[MetricSample]) -> list[Hop]:
    """The named figures, in the order an event passes them."""
    _, commits = _summed(metrics, "edgebridge_enricher_commits_total")
    gaps, _ = _summed(metrics, "edgebridge_enricher_open_gaps")
    return [
        _metric_hop("edge_committed", "edge: committed to the outboxes", metrics,
                    "edgebridge_agent_events_committed_total"),
        _metric_hop("edge_receipted", "edge: receipted (Kafka holds them)", metrics,
                    "edgebridge_agent_events_receipted_total"),
        _metric_hop("bridge", "bridge: events confirmed in raw", metrics, "edgebridge_bridge_events_total"),
        _topic_hop("raw", "raw topic", topics, "raw"),
        _topic_hop("processed", "processed topic (records and transaction markers)", topics, "processed"),
        _metric_hop("sinks", "sinks: rows written", metrics, "edgebridge_sink_written_total"),
        _metric_hop("duplicates", "enricher: duplicates dropped", metrics,
                    "edgebridge_enricher_duplicates_dropped_total"),
        Hop("open_gaps", "enricher: open gaps", None, _count(gaps),
            "edgebridge_enricher_open_gaps" + (" (not reported)" if gaps is None else " (metrics)")),
        Hop("commit_latency", "enricher: transaction commit latency", commits, commit_latency(metrics),
            COMMIT + " (metrics; per second: transactions)"),
    ]
