"""The package boundaries of docs/architecture.md, checked on the source: who may import whom.

A device installs only ``edgebridge[agent]``, so an import of confluent-kafka anywhere under
``edge_agent/`` would break it in the field; components talk only through the brokers. paho's
internals are touched in one place, the MQTT adapter ``edgebridge/mqtt/``, so that a paho release is
checked against it alone.
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
    # the dashboard reads the enricher's registry and sink layout; it never runs a component
    "dashboard": {"edge_agent", "bridge", "simulators"},
}
# edgebridge/ is installed everywhere, devices included: a client library of one side only may be
# imported there inside a function (an admin command), never at module level; except paho in the MQTT
# adapter, which only the agent and the bridge import (both install paho).
MODULE_LEVEL_FORBIDDEN = {"edgebridge": {"confluent_kafka", "paho", "serial", "sqlite_utils", "psycopg"}}
ADAPTER = ROOT / "edgebridge" / "mqtt"
# the adapter is imported on devices: never Kafka's client, even lazily
ADAPTER_FORBIDDEN = {"confluent_kafka", "edge_agent", "bridge", "enricher", "simulators"}
# the product packages, in which only the adapter may touch paho's internals
PRODUCT = ["edgebridge", "edge_agent", "bridge", "enricher", "simulators"]


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
        if module in MODULE_LEVEL_FORBIDDEN[package] and not (module == "paho" and ADAPTER in path.parents)
    ]
    assert violations == []


def test_the_mqtt_adapter_imports_no_kafka_and_the_core_never_loads_it_eagerly() -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted(ADAPTER.rglob("*.py"))
        for module, line in _imports(path)
        if module in ADAPTER_FORBIDDEN
    ]
    # the rest of edgebridge/ is imported without paho installed: the adapter only inside a function
    violations += [
        f"{path.relative_to(ROOT)}:{node.lineno} imports the MQTT adapter at module level"
        for path in sorted((ROOT / "edgebridge").rglob("*.py"))
        if ADAPTER not in path.parents
        for node in ast.parse(path.read_text()).body
        if _names_module(node, "edgebridge.mqtt")
    ]
    assert violations == []


def _names_module(node: ast.stmt, module: str) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name == module or a.name.startswith(module + ".") for a in node.names)
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return node.module == module or node.module.startswith(module + ".") or (
            node.module == module.rpartition(".")[0] and any(a.name == "mqtt" for a in node.names))
    return False


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _paho_private_names() -> set[str]:
    """Every private name of paho's modules and classes, and of the attributes of its objects; not
    those that Python gives every named tuple or enum (``_replace``, ``_value_``)."""
    import collections
    import enum
    import importlib
    import pkgutil

    import paho.mqtt
    import paho.mqtt.client as mqtt

    names: set[str] = set()
    for info in pkgutil.iter_modules(paho.mqtt.__path__, "paho.mqtt."):
        module = importlib.import_module(info.name)
        names |= {n for n in dir(module) if _private(n)}
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__.startswith("paho"):
                names |= {n for n in dir(value) if _private(n)}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    message = mqtt.MQTTMessage(1, b"t")
    names |= {n for obj in (client, message, message.info) for n in dir(obj) if _private(n)}
    client._reset_sockets()
    python = (collections.namedtuple("T", "a"), enum.Enum, enum.IntEnum, enum.IntFlag, Exception)
    return names - {n for t in python for n in dir(t)}


def _paho_internals_used(path: Path, private: set[str]) -> list[str]:
    """Where ``path`` touches paho's internals: imports a private name from paho, reads a paho private
    name off anything but ``self``/``cls`` (``client._sock``, ``mqtt._ConnectionState``), or subclasses
    a paho class (whose ``self._...`` would then be paho's)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    paho_names = set()  # local names bound to paho's modules or classes
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "paho":
                    paho_names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "paho":
            for alias in node.names:
                paho_names.add(alias.asname or alias.name)
                if _private(alias.name):
                    found.append(f"{node.lineno} imports {node.module}.{alias.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{node.lineno} uses .{node.attr}")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in paho_names:
                    found.append(f"{node.lineno} subclasses {ast.unparse(base)}")
    return sorted(found, key=lambda where: int(where.split()[0]))


def test_only_the_mqtt_adapter_touches_pahos_internals() -> None:
    private = _paho_private_names()
    assert {"_sock", "_out_packet", "_in_packet", "_ConnectionState", "_reset_sockets"} <= private
    violations = [
        f"{path.relative_to(ROOT)}:{where}"
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if ADAPTER not in path.parents
        for where in _paho_internals_used(path, private)
    ]
    assert violations == []


def test_the_import_scanner_sees_what_it_must(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import paho.mqtt.client\nfrom bridge import x\n\ndef f():\n    import confluent_kafka\n"
    )
    assert [m for m, _ in _imports(source)] == ["paho", "bridge", "confluent_kafka"]
    assert [m for m, _ in _imports(source, module_level_only=True)] == ["paho", "bridge"]


def test_the_paho_internals_scanner_sees_what_it_must(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import paho.mqtt.client as mqtt\nfrom paho.mqtt.client import _ConnectionState\n"
        "class C(mqtt.Client):\n    pass\n"
        "class D:\n    def f(self, client):\n        self._sock = client._sock\n"
        "        return mqtt._ConnectionState, self._out_packet, other._lock_free\n"
    )
    assert _paho_internals_used(source, {"_sock", "_out_packet", "_ConnectionState"}) == [
        "2 imports paho.mqtt.client._ConnectionState", "3 subclasses mqtt.Client", "7 uses ._sock",
        "8 uses ._ConnectionState"]
