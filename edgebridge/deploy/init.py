"""`edgebridge deploy init`: one directory holding every secret of a deployment, made in one go.

The directory is built by *parts*, each writing its own files into it and adding the variables its
services need to the env files compose reads (``env/<service>.env``), all sharing one CA: the MQTT part
(:mod:`edgebridge.deploy.mqtt_part`: Mosquitto's certificate, passwords and ACL, the bridge's MQTT
users, one folder per device) and the Kafka part (:mod:`edgebridge.deploy.kafka_part`: Kafka's
certificate, SCRAM users and security settings, each component's Kafka settings). The settings of the
run are kept in ``deploy.json`` (no secret in it), so that adding devices later produces files that
match the first ones.

An existing directory is never overwritten: the CA key and the passwords in it are the deployment's,
and a second `init` would lock every device out. Devices are added with
:func:`edgebridge.deploy.mqtt_part.add_devices`, passwords renewed with ``rotate``.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edgebridge.deploy.files import PUBLIC, SECRET, write_new
from edgebridge.deploy.pki import Issued, make_ca

__all__ = ["PARTS", "Build", "DeployError", "Plan", "env_name", "init", "read_plan"]

PLAN_FILE = "deploy.json"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "mosquitto", "kafka")
# always in the server certificates: with compose on the host's network the bridge, the enricher and
# the health checks reach the brokers through the loopback interface
LOOPBACK = ("localhost", "127.0.0.1")


class DeployError(Exception):
    """Bad input or an output directory that cannot be used: the message says which and why."""


@dataclass(frozen=True)
class Plan:
    """What `deploy init` was asked for; kept in ``deploy.json`` for later `add-devices` runs."""

    devices: tuple[str, ...]
    hosts: tuple[str, ...] = DEFAULT_HOSTS
    bridges: int = 1  # bridge replicas, each with its own MQTT users
    topic_prefix: str = "devices"
    device_url: str = "mqtts://localhost:8883"  # how devices reach Mosquitto
    bridge_url: str = "mqtts://localhost:8883"  # how the bridge reaches Mosquitto
    cloud_ca_file: str = "/etc/edgebridge/ca.crt"  # where the cloud containers see DIR/ca.crt
    device_ca_file: str = "/etc/edge-agent/ca.crt"  # where a device keeps devices/<id>/ca.crt
    # the user Mosquitto runs as (1883 in deploy/mosquitto/Dockerfile and the eclipse-mosquitto image):
    # DIR/mosquitto is given to it when deploy init runs as root, so the broker can read its key
    mosquitto_uid: int = 1883

    @property
    def server_hosts(self) -> tuple[str, ...]:
        """The names in the server certificates: ``hosts`` and the loopback names."""
        return tuple(dict.fromkeys((*self.hosts, *LOOPBACK)))

    def check(self) -> None:
        if not self.hosts:
            raise DeployError("--hosts: at least one name or address the servers are reached by")
        for host in self.hosts:
            _check_host(host)
        if not 1 <= self.bridges <= 64:
            raise DeployError(f"--bridges: between 1 and 64, not {self.bridges}")
        for option, url in (("--device-url", self.device_url), ("--bridge-url", self.bridge_url)):
            parsed = urlparse(url)
            bad = parsed.scheme != "mqtts" or not parsed.hostname or parsed.username is not None
            if bad or parsed.path not in ("", "/"):
                raise DeployError(f"{option}: expected mqtts://host:port, not {url!r}")
            try:
                parsed.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError as exc:
                raise DeployError(f"{option}: {exc}") from None
            if parsed.hostname not in {h.lower() for h in self.server_hosts}:
                # the TLS client checks the name it dialled against the certificate's
                raise DeployError(f"{option}: {parsed.hostname} is not among --hosts "
                                  f"({','.join(self.hosts)}): the server certificate would not match it")
        if not 0 <= self.mosquitto_uid < 2**31:
            raise DeployError(f"--mosquitto-uid: not a user id: {self.mosquitto_uid}")


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.split(".")
    if not host or len(host) > 253 or not all(
            0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
            and not label.startswith("-") and not label.endswith("-") for label in labels):
        raise DeployError(f"--hosts: {host!r} is neither an IP address nor a DNS name")


@dataclass
class Build:
    """A directory being written: the parts write into ``root`` and add their variables to ``env``."""

    plan: Plan
    root: Path
    ca: Issued
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # env/<name>.env -> variables

    def env_file(self, name: str) -> dict[str, str]:
        return self.env.setdefault(name, {})


# Each part writes its files for a new directory, issuing its certificates from build.ca and adding its
# variables to build.env.
def _mqtt(build: Build) -> None:
    from edgebridge.deploy import mqtt_part

    mqtt_part.init(build)


def _kafka(build: Build) -> None:
    from edgebridge.deploy import kafka_part

    kafka_part.init(build)


PARTS: list[Callable[[Build], None]] = [_mqtt, _kafka]


def init(out: Path, plan: Plan) -> list[Path]:
    """Write a new deployment directory at ``out``; return the files written, relative to ``out``."""
    plan.check()
    from edgebridge.deploy import mqtt_part

    mqtt_part.check_devices(plan.devices, existing=())
    try:
        out.mkdir(mode=0o700, parents=True)  # atomic: fails when anything is there already
    except FileExistsError:
        raise DeployError(f"{out} exists: deploy init never overwrites a deployment's secrets "
                          "(add devices with `edgebridge deploy add-devices`)") from None
    except OSError as exc:
        raise DeployError(f"cannot create {out}: {exc.strerror or exc}") from None
    try:
        build = Build(plan, out, make_ca("edgebridge deployment CA"))
        # every client's trust anchor: compose mounts it in each container, devices get a copy
        write_new(out / "ca.crt", build.ca.cert_pem, PUBLIC)
        # the CA key signs every server certificate: keep it offline once the servers have theirs
        write_new(out / "ca.key", build.ca.key_pem, SECRET)
        for part in PARTS:
            part(build)
        for name, variables in build.env.items():
            write_env(out / "env" / f"{name}.env", variables)
        # the devices are in the password file, which add-devices keeps up to date; not here
        kept = {k: v for k, v in asdict(plan).items() if k != "devices"}
        write_new(out / PLAN_FILE, json.dumps(kept, indent=2) + "\n", PUBLIC)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # half a deployment is worse than none
        raise
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


def write_env(path: Path, variables: dict[str, str]) -> Path:
    """An env file as compose's ``env_file`` and systemd's ``EnvironmentFile`` read it (0600)."""
    for name, value in variables.items():
        if any(c in value for c in "\n\r\0\"'\\ #$"):
            raise ValueError(f"{name}: the value would need quoting in an env file")
    text = "# Written by `edgebridge deploy init`: secrets, keep 0600.\n"
    return write_new(path, text + "".join(f"{k}={v}\n" for k, v in variables.items()), SECRET)


def read_plan(out: Path) -> Plan:
    """The plan an existing deployment directory was made with."""
    path = out / PLAN_FILE
    try:
        data = json.loads(path.read_text())
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return Plan(devices=(), **fields)
    except FileNotFoundError:
        raise DeployError(f"{out} is not a directory made by `edgebridge deploy init` (no {PLAN_FILE})") \
            from None
    except (OSError, ValueError, TypeError) as exc:
        raise DeployError(f"{path}: unreadable ({exc})") from None


def env_name(service: str, replica: int) -> str:
    """``bridge`` for the first replica (the one compose runs), ``bridge-2``... for more."""
    return service if replica == 1 else f"{service}-{replica}"
