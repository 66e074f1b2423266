"""The package boundaries of DESIGN.md, checked on the source: who may import whom.

A device installs only ``edgebridge[agent]``, so an import of confluent-kafka anywhere under
``edge_agent/`` would break it in the field; components talk only through the brokers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import (at any level, lazily or not)
FORBIDDEN = {
    "edge_agent": {"confluent_kafka", "bridge", "enricher", "simulators"},
    "bridge": {"enricher", "edge_agent", "simulators"},
    "enricher": {"bridge", "edge_agent", "simulators", "paho"},
    "edgebridge": {"confluent_kafka", "paho", "serial", "sqlite_utils"},
}
# edgebridge/ may name components only as strings (the CLI's lazy dispatch), never import them.
COMPONENTS = {"edge_agent", "bridge", "enricher", "simulators"}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_its_boundaries(package: str) -> None:
    forbidden = FORBIDDEN[package] | (COMPONENTS if package == "edgebridge" else set())
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module, line in _imports(path)
        if module in forbidden
    ]
    assert violations == []
