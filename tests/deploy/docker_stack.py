"""The Docker side of the stack test: the engine, a base image made without a registry, the compose project.

Nothing here skips: a machine without Docker fails the test with the command that would install it
(`make setup` does, on Debian).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE_IMAGE = "edgebridge-base:bookworm"
_ENGINE: list[subprocess.Popen[bytes]] = []  # the dockerd this process started, if any


def run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600,
        check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-3000:]}", pytrace=False)
    return result


def ensure_engine(log_dir: Path) -> None:
    """A Docker engine answering `docker info`: the running one, or a dockerd started here (as root)."""
    for tool in ("docker", "dockerd", "docker-compose", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: `make setup` installs docker.io, docker-compose and "
                        "debootstrap (apt-get)", pytrace=False)
    if run(["docker", "info"], check=False, timeout=60).returncode == 0:
        return
    # Detached from the test: images and the engine outlive the session, as on a user's machine; the
    # Popen is kept for the process's life (collected, it would warn that dockerd still runs).
    with (log_dir / "dockerd.log").open("ab") as log:
        _ENGINE.append(subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True))
    try:
        wait_for(lambda: run(["docker", "info"], check=False, timeout=30).returncode == 0,
                 timeout=90, what="dockerd answering `docker info`", every=1)
    except AssertionError:
        pytest.fail(f"dockerd did not start; its log: {log_dir / 'dockerd.log'}", pytrace=False)


def ensure_base_image(work: Path) -> str:
    """A Debian bookworm base image made with debootstrap (no registry): made once per engine."""
    if run(["docker", "image", "inspect", BASE_IMAGE], check=False).returncode == 0:
        return BASE_IMAGE
    root = work / "base-root"
    run(["debootstrap", "--variant=minbase", "bookworm", str(root), "http://deb.debian.org/debian"],
        timeout=900)
    with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
        imported = subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout,
                                  capture_output=True, text=True, timeout=300)
    if imported.returncode != 0:
        pytest.fail(f"docker import failed: {imported.stderr}", pytrace=False)
    shutil.rmtree(root, ignore_errors=True)
    return BASE_IMAGE


@dataclass
class ComposeProject:
    """`docker-compose -p NAME -f deploy/compose.yaml` with the variables the stack reads."""

    name: str
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, timeout: float = 600,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["docker-compose", "-p", self.name, "-f", str(DEPLOY / "compose.yaml"), *args]
        return run(cmd, env=self.env, timeout=timeout, check=check)

    def containers(self) -> dict[str, dict[str, object]]:
        """service -> `docker inspect` of its container, for every container of the project."""
        ids = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.name}"]).stdout
        if not ids.split():
            return {}
        inspected = json.loads(run(["docker", "inspect", *ids.split()]).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}

    def health(self) -> dict[str, str]:
        """service -> its health ("healthy", "starting", "unhealthy") or, without a check, its state."""
        out = {}
        for service, c in self.containers().items():
            state = c["State"]
            assert isinstance(state, dict)
            out[service] = state.get("Health", {}).get("Status") or state["Status"]
        return out

    def wait_healthy(self, services: Sequence[str], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if all(health.get(s) == "healthy" for s in services):
                return
            time.sleep(2)
        pytest.fail(f"not healthy after {timeout:.0f} s: {self.health()}\n{self.logs()}", pytrace=False)

    def logs(self, tail: int = 40) -> str:
        result = self("logs", "--no-color", "--tail", str(tail), check=False)
        return "\n".join(line for line in result.stdout.splitlines() if "| %" not in line)
