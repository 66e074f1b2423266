"""deploy/ checked without a Docker engine or systemd: schema, lint, and agreement with the code."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgebridge.cli import COMMANDS

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: it is in the dev extras (pip install -e '.[dev]')")
    return found


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "kafka/Dockerfile", "mosquitto/Dockerfile"])
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    result = subprocess.run([_tool("hadolint"), str(DEPLOY / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _commands(service: dict[str, Any]) -> list[list[str]]:
    """The edgebridge command lines a service runs: its command, or each `edgebridge ...` of an
    `sh -c` script."""
    if service.get("entrypoint") == ["sh", "-c"]:
        script = service["command"][0]
        return [part.split()[1:] for part in script.split("&&") if part.split()[:1] == ["edgebridge"]]
    return [service["command"]]


def test_compose_commands_are_real_edgebridge_commands() -> None:
    from ruamel.yaml import YAML  # comes with check-jsonschema

    services = YAML(typ="safe").load((DEPLOY / "compose.yaml").read_text())["services"]
    ours = {name: s for name, s in services.items() if "edgebridge:latest" in s.get("image", "")}
    assert {"topics", "bridge", "enricher", "sink"} <= set(ours)
    for name, service in ours.items():
        commands = _commands(service)
        assert commands, name
        for command in commands:
            assert command[0] in COMMANDS, (name, command)
            # every subcommand answers --help: a typo in compose.yaml would only show at `up`
            result = subprocess.run([sys.executable, "-m", "edgebridge", *command[:2], "--help"],
                                    capture_output=True, text=True)
            assert result.returncode == 0, (name, command, result.stderr[-500:])


def test_every_service_has_a_healthcheck_or_runs_once() -> None:
    from ruamel.yaml import YAML

    services = YAML(typ="safe").load((DEPLOY / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        assert "healthcheck" in service or service.get("restart") == "no", name
        assert service.get("network_mode") == "host", name
        assert service.get("cap_drop") == ["ALL"], name
        assert service.get("read_only") is True, name


def test_systemd_unit_has_what_the_agent_issue_requires() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "edge-agent.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["DynamicUser"] == "yes"
    assert service["SupplementaryGroups"] == "dialout"
    assert service["ProtectSystem"] == "strict"
    assert "WatchdogSec" in service and "StateDirectory" in service
    assert "PrivateDevices" not in service  # it would hide the serial ports
    assert service["ExecStart"].split()[1:3] == ["agent", "run"]
