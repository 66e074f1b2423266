"""Each extra installs what its components import, and nothing the other side needs.

A device installs ``edgebridge[agent]`` and nothing else; the cloud image installs ``edgebridge[cloud]``
(plus ``[postgres]``). A missing dependency there is found by an operator, not by the suite, unless the
suite installs each extra alone: here the package is built once from this tree into a wheel, and one
fresh virtualenv per extra (``python -m venv``, dependencies resolved by pip as a user's install would)
is created once per session. In the agent's venv no sqlite-utils, click or confluent-kafka may appear and
every module of ``edgebridge`` and ``edge_agent`` imports; in the cloud's, every module of ``edgebridge``,
``bridge`` and ``enricher`` imports (the SQLite sink among them) and every cloud command answers
``--help``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgebridge.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["edgebridge", "edge_agent", "bridge", "enricher", "simulators", "dashboard"]

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]

# Each command of `edgebridge`, by the side that runs it; a new command must be placed here.
AGENT_COMMANDS = {"agent"}
CLOUD_COMMANDS = {"bridge", "enricher", "sink", "devices", "topics", "tail", "deadletters", "command",
                  "audit", "replay", "aggregator"}
DEV_COMMANDS = {"brokers", "demo", "simulate"}  # the [dev] install: local brokers, simulators
DEPLOY_COMMANDS = {"deploy"}  # the [deploy] install, on the operator's machine: a deployment's secrets
DASHBOARD_COMMANDS = {"dashboard"}  # the [dashboard] install: the web page
# Every cloud command line an operator can ask --help of.
CLOUD_HELP = [
    ["bridge"], ["bridge", "run"],
    ["enricher"], ["enricher", "run"],
    ["sink"], ["sink", "sqlite"], ["sink", "postgres"],
    ["devices"], *(["devices", sub] for sub in ("put", "get", "list", "import", "delete")),
    ["topics"], ["topics", "create"], ["topics", "acls"],
    ["tail"], ["deadletters"], ["deadletters", "list"], ["deadletters", "redrive"], ["command"], ["audit"],
    ["replay"], ["aggregator"], ["aggregator", "run"], ["aggregator", "check"],
]

# Imports every module of the named packages (but __main__ and the skipped modules and packages) in the
# venv; prints the failures.
IMPORT_ALL = """
import importlib, pkgutil, sys
skip = set(sys.argv[2].split(",")) if len(sys.argv) > 2 and sys.argv[2] else set()
failed = []
for name in sys.argv[1].split(","):
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if info.name.endswith(".__main__") or any(info.name == s or info.name.startswith(s + ".")
                                                  for s in skip):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
"""
ABSENT = "import importlib.util, sys; print(','.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"


def _run(args: list[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The edgebridge wheel, built once from a copy of this tree (the build leaves nothing in it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", out, src])
    (built,) = out.glob("edgebridge-*.whl")
    return built


@pytest.fixture(scope="session")
def venv_with(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``venv_with("agent")``: the bin/ of a fresh venv holding only ``edgebridge[agent]``, made once."""
    made: dict[str, Path] = {}

    def make(extra: str) -> Path:
        if extra not in made:
            env = tmp_path_factory.mktemp(f"venv-{extra}")
            _run([sys.executable, "-m", "venv", env])
            _run([env / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  f"{wheel}[{extra}]"])
            made[extra] = env / "bin"
        return made[extra]

    return make


def test_every_command_belongs_to_one_side() -> None:
    sides = AGENT_COMMANDS | CLOUD_COMMANDS | DEV_COMMANDS | DEPLOY_COMMANDS | DASHBOARD_COMMANDS
    assert set(COMMANDS) == sides
    assert {args[0] for args in CLOUD_HELP} == CLOUD_COMMANDS


def test_agent_extra_has_no_cloud_libraries_and_imports_the_agent(venv_with: Callable[[str], Path],
                                                                  tmp_path: Path) -> None:
    bin_ = venv_with("agent")
    present = _run([bin_ / "python", "-c", ABSENT, "sqlite_utils", "click", "confluent_kafka", "psycopg"],
                   cwd=tmp_path).stdout.strip()
    assert present == ""
    # edgebridge.deploy is the operator's (the [deploy] extra), never a device's
    failed = _run([bin_ / "python", "-c", IMPORT_ALL, "edgebridge,edge_agent", "edgebridge.deploy"],
                  cwd=tmp_path).stdout.strip()
    assert failed == ""
    usage = _run([bin_ / "edgebridge", "agent", "run", "--help"], cwd=tmp_path).stdout
    assert usage.startswith("usage: edgebridge agent")


def test_cloud_extra_imports_every_cloud_module(venv_with: Callable[[str], Path], tmp_path: Path) -> None:
    bin_ = venv_with("cloud")
    # the PostgreSQL sink is the [postgres] extra's; everything else of the cloud side is [cloud]'s
    packages, skip = "edgebridge,bridge,enricher", "enricher.sinks.postgres,edgebridge.deploy"
    failed = _run([bin_ / "python", "-c", IMPORT_ALL, packages, skip], cwd=tmp_path).stdout.strip()
    assert failed == ""
    _run([bin_ / "python", "-c", "import enricher.sinks.sqlite"], cwd=tmp_path)


def test_deploy_extra_imports_every_deploy_module(venv_with: Callable[[str], Path], tmp_path: Path) -> None:
    bin_ = venv_with("deploy")
    failed = _run([bin_ / "python", "-c", IMPORT_ALL, "edgebridge.deploy"], cwd=tmp_path).stdout.strip()
    assert failed == ""
    present = _run([bin_ / "python", "-c", ABSENT, "confluent_kafka", "paho", "psycopg"], cwd=tmp_path)
    assert present.stdout.strip() == ""


def test_dashboard_extra_imports_the_dashboard_and_ships_its_static_files(
    venv_with: Callable[[str], Path], tmp_path: Path
) -> None:
    bin_ = venv_with("dashboard")
    failed = _run([bin_ / "python", "-c", IMPORT_ALL, "dashboard"], cwd=tmp_path).stdout.strip()
    assert failed == ""
    # the page's script and style come from the installed package, never from a CDN
    names = _run([bin_ / "python", "-c", "from importlib import resources; print(sorted(p.name for p in "
                  "resources.files('dashboard').joinpath('static').iterdir()))"], cwd=tmp_path).stdout
    assert "dashboard.js" in names and "dashboard.css" in names and "favicon.svg" in names
    usage = _run([bin_ / "edgebridge", "dashboard", "--help"], cwd=tmp_path).stdout
    assert usage.startswith("usage: edgebridge dashboard")


@pytest.mark.parametrize("args", CLOUD_HELP, ids=" ".join)
def test_cloud_extra_runs_every_cloud_commands_help(
    args: list[str], venv_with: Callable[[str], Path], tmp_path: Path
) -> None:
    result = _run([venv_with("cloud") / "edgebridge", *args, "--help"], cwd=tmp_path)
    assert result.stdout.startswith(f"usage: edgebridge {args[0]}")


def test_agent_extra_installs_the_systemd_unit_from_the_wheel(venv_with: Callable[[str], Path],
                                                              tmp_path: Path) -> None:
    # what an operator does after `pip install 'edgebridge[agent]'`: the unit and the example config
    # must be in the wheel (package data), and ExecStart= must name this venv's edgebridge
    bin_ = venv_with("agent")
    root = tmp_path / "root"
    root.mkdir()
    _run([bin_ / "edgebridge", "agent", "install", "--root", root], cwd=tmp_path)
    unit = (root / "etc/systemd/system/edge-agent.service").read_text()
    assert f"\nExecStart={bin_ / 'edgebridge'} agent run --config /etc/edge-agent/agent.toml\n" in unit
    example = (ROOT / "edge_agent" / "data" / "agent.example.toml").read_text()
    assert (root / "etc/edge-agent/agent.toml").read_text() == example
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze is not installed: `make setup` installs it (package systemd)"
    _run([systemd_analyze, "verify", root / "etc/systemd/system/edge-agent.service"], cwd=tmp_path)


def test_deploy_extra_writes_a_deployment(venv_with: Callable[[str], Path], tmp_path: Path) -> None:
    """`edgebridge[deploy]` alone is enough to run `deploy init` (cryptography, no paho needed)."""
    bin_ = venv_with("deploy")
    assert _run([bin_ / "edgebridge", "deploy", "init", "--help"], cwd=tmp_path).stdout.startswith(
        "usage: edgebridge deploy init")
    _run([bin_ / "edgebridge", "deploy", "init", "--out", tmp_path / "d", "--devices", "pump-1"],
         cwd=tmp_path)
    assert "\nbridge-uplink-1:$7$" in "\n" + (tmp_path / "d" / "mosquitto" / "passwords").read_text()
