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


def registered(metrics_class: type, prefix: str) -> set[str]:
    registry = CollectorRegistry()
    metrics_class(registry)
    return {family.name for family in registry.collect() if family.name.startswith(prefix)}


@pytest.mark.parametrize("component", ["bridge", "enricher"])
def test_every_metric_is_documented_and_every_documented_metric_exists(component: str) -> None:
    if component == "bridge":
        from bridge.metrics import BridgeMetrics as metrics_class
    else:
        from enricher.metrics import EnricherMetrics as metrics_class
    prefix = f"edgebridge_{component}_"
    exported = registered(metrics_class, prefix)
    in_docs = documented(ROOT / "docs" / f"{component}.md", prefix)
    assert len(exported) > 10
    assert exported - in_docs == set(), "exported but not in the docs"
    assert in_docs - exported == set(), "in the docs but not exported"
