"""The operator docs list every metric a component exports, and nothing it does not.

``docs/<component>.md`` names metrics in backticks: the first with its full prefix
(``edgebridge_enricher_consumed_total``), the rest abbreviated to ``_name`` after it, labels in braces.
A metric added without a line in the docs (or a documented one removed) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]


def documented(doc: Path, prefix: str) -> set[str]:
    section = doc.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    names = set()
    for token in re.findall(r"`([a-z_{}]+)", section):
        name = token.split("{", 1)[0]
        if name.startswith(prefix):
            names.add(name)
        elif name.startswith("_"):
            names.add(prefix + name[1:])
    return {n.removesuffix("_total") for n in names}


def registered(component: str, prefix: str, tmp_path: Path) -> set[str]:
    registry = CollectorRegistry()
    if component == "bridge":
        from bridge.metrics import BridgeMetrics

        BridgeMetrics(registry)
    elif component == "enricher":
        from enricher.metrics import EnricherMetrics

        EnricherMetrics(registry)
    elif component == "aggregator":
        from enricher.aggregates.metrics import AggregatorMetrics

        AggregatorMetrics(registry)
    else:  # the agent's collector reads a live Agent (nothing is opened or connected by building one)
        from edge_agent.agent import Agent
        from edge_agent.config import AgentConfig
        from edge_agent.metrics import register
        from edgebridge.config import load_config

        config = load_config(AgentConfig, overrides={"state_dir": str(tmp_path), "systemd.notify": False},
                             env={})
        agent = Agent(config)
        register(agent, registry)
        try:
            return {family.name for family in registry.collect() if family.name.startswith(prefix)}
        finally:
            agent.wake.close()
            agent.notifier.close()
    return {family.name for family in registry.collect() if family.name.startswith(prefix)}


@pytest.mark.parametrize("component", ["agent", "bridge", "enricher", "aggregator"])
def test_every_metric_is_documented_and_every_documented_metric_exists(
    component: str, tmp_path: Path
) -> None:
    prefix = f"edgebridge_{component}_"
    exported = registered(component, prefix, tmp_path)
    page = {"aggregator": "aggregates"}.get(component, component)
    in_docs = documented(ROOT / "docs" / f"{page}.md", prefix)
    assert len(exported) > 10
    assert exported - in_docs == set(), "exported but not in the docs"
    assert in_docs - exported == set(), "in the docs but not exported"
