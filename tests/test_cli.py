"""Every `edgebridge` subcommand answers --help, and dispatch imports only the chosen component."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgebridge.cli import COMMANDS


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgebridge", *args], capture_output=True, text=True,
                          timeout=60)


def test_top_level_help_lists_every_command() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name}" in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    result = _run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: edgebridge {name}")
    assert len(result.stdout.splitlines()) >= 3  # a description, not just a usage line


def test_unknown_command_is_an_error() -> None:
    result = _run("no-such-command")
    assert result.returncode == 2
    assert "unknown command 'no-such-command'" in result.stderr


def test_dispatch_is_lazy() -> None:
    """Loading the CLI imports no component and no broker client library."""
    code = (
        "import sys, edgebridge.cli, edgebridge.config, edgebridge.envelope\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('confluent_kafka', 'paho', 'serial', 'edge_agent', 'bridge', 'enricher', 'simulators')]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
