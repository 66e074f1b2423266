"""The package boundaries of docs/architecture.md, checked on the source: who may import whom.

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
    "edgebridge": {"edge_agent", "bridge", "enricher", "simulators"},
}
# edgebridge/ is installed everywhere, devices included: a client library of one side only may be
# imported there inside a function (an admin command), never at module level.
MODULE_LEVEL_FORBIDDEN = {"edgebridge": {"confluent_kafka", "paho", "serial", "sqlite_utils", "psycopg"}}


def _imports(path: Path, module_level_only: bool = False) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in (tree.body if module_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_its_boundaries(package: str) -> None:
    forbidden = FORBIDDEN[package]
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module, line in _imports(path)
        if module in forbidden
    ]
    assert violations == []


@pytest.mark.parametrize("package", sorted(MODULE_LEVEL_FORBIDDEN))
def test_package_imports_side_specific_libraries_only_lazily(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {module} at module level"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module, line in _imports(path, module_level_only=True)
        if module in MODULE_LEVEL_FORBIDDEN[package]
    ]
    assert violations == []


def test_the_import_scanner_sees_what_it_must(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import paho.mqtt.client\nfrom bridge import x\n\ndef f():\n    import confluent_kafka\n"
    )
    assert [m for m, _ in _imports(source)] == ["paho", "bridge", "confluent_kafka"]
    assert [m for m, _ in _imports(source, module_level_only=True)] == ["paho", "bridge"]
