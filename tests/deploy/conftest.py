"""A deployment directory written by `edgebridge deploy init` and the shipped Mosquitto running on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgebridge.deploy.cli import main as deploy_main
from tests.deploy.secured_broker import Client, ShippedMosquitto

DEVICES = ("dev-a", "dev-b", "dev-c", "dév-\"q\"\\")  # the last: UTF-8, a quote, a backslash


def deploy(*args: str) -> int:
    """``edgebridge deploy ARGS`` in this process, as the command line runs it."""
    return deploy_main(list(args), prog="edgebridge deploy")


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    pairs = (line.split("=", 1) for line in lines)
    return {name: value for name, value in pairs}


@dataclass
class Deployment:
    out: Path
    broker: ShippedMosquitto

    @property
    def ca_file(self) -> Path:
        return self.out / "ca.crt"

    def password(self, user: str) -> str:
        if user.startswith("bridge-"):
            _, link, replica = user.split("-")
            env = self.out / "env" / ("bridge.env" if replica == "1" else f"bridge-{replica}.env")
            return env_file(env)[f"EDGEBRIDGE_{link.upper()}_PASSWORD"]
        if user == "health":
            options = (self.out / "mosquitto" / "health" / "mosquitto_sub").read_text().splitlines()
            return next(line[3:] for line in options if line.startswith("-P "))
        return (self.out / "devices" / user / "mqtt-password").read_text().strip()

    def client(self, user: str | None, password: str | None = None, **kwargs: str) -> Client:
        """A client logged in as ``user`` with its password (or ``password``), not yet connected."""
        if user is not None and password is None:
            password = self.password(user)
        return Client(self.broker.port, self.ca_file, user, password, **kwargs)


def _start(tmp: Path, *init_args: str) -> Deployment:
    out = tmp / "deployment"
    assert deploy("init", "--out", str(out), "--devices", ",".join(DEVICES), *init_args) == 0
    broker = ShippedMosquitto(tmp / "mosquitto", out / "mosquitto")
    broker.start()
    return Deployment(out, broker)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One deployment (three devices, two bridge replicas) and its broker, shared by a module's tests
    that do not change either."""
    d = _start(tmp_path_factory.mktemp("deploy"), "--bridges", "2")
    yield d
    d.broker.stop()


@pytest.fixture
def own_deployment(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """``own_deployment(*init_args)``: a deployment and broker of this test alone (it may change them)."""
    started: list[Deployment] = []

    def start(*init_args: str) -> Deployment:
        started.append(_start(tmp_path / str(len(started)), *init_args))
        return started[-1]

    yield start
    for d in started:
        d.broker.stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """Clients to close at the end of the test: append them."""
    made: list[Client] = []
    yield made
    for c in made:
        c.close()
