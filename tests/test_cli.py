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


def test_a_sink_hanging_in_its_database_connect_stops_at_once_on_sigterm() -> None:
    """A server that accepts the connection and never answers (psycopg would wait up to its connect
    timeout): SIGTERM ends the sink at once, as nothing was written yet. Its stop handlers are installed
    only after the store is open; before that, a SIGTERM would wait out the connect."""
    import os
    import signal
    import socket
    import time

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel completes the handshake; nobody ever answers
        port = server.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgebridge", "sink", "postgres", "--dsn",
             f"host=127.0.0.1 port={port} connect_timeout=60"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            # connected and waiting: the connection is in the listen queue (or accepted by nobody)
            while not _established(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _established(port), "the sink never reached the database"
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == -signal.SIGTERM
        finally:
            proc.kill()
            proc.wait()


def _established(port: int) -> bool:
    """A client connection to ``port`` on 127.0.0.1 exists (Linux /proc/net/tcp, state 01)."""
    with open("/proc/net/tcp") as table:
        return any(fields[2].endswith(f":{port:04X}") and fields[3] == "01"
                   for fields in (line.split() for line in table.readlines()[1:]))
