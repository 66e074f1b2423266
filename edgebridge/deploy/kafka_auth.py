"""Kafka secured for one deployment: TLS from the deployment's CA, SCRAM users, the broker's security
settings and each component's client settings.

What a deployment's Kafka looks like (and what `edgebridge brokers` runs in the tests with the same
functions, see :class:`edgebridge.devbrokers.kafka.KafkaOptions`):

* clients reach one listener, ``SASL_SSL``: TLS with a server certificate signed by the deployment's CA
  (the clients check it, and its host names), then SCRAM-SHA-512 with a user of its own per component:
  ``admin`` (the operator and `edgebridge topics`; a super user), ``bridge``, ``enricher``, ``sink``;
* the ``CONTROLLER`` listener (KRaft's own traffic inside the broker) is SASL_PLAINTEXT with the PLAIN
  mechanism and a ``controller`` user known only to server.properties: SCRAM users live in the metadata
  log, which the controller must read before it can check them, so KRaft cannot use SCRAM there; and
  with an authorizer on, an unauthenticated controller listener would have to make ``User:ANONYMOUS`` a
  super user. Bind it to a loopback or private address: clients never use it;
* the StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``: a user may do only what an ACL
  (`edgebridge topics acls`, :mod:`edgebridge.kafka_acls`) grants it;
* the SCRAM users are created when the storage is formatted (``kafka-storage format --add-scram``,
  :func:`scram_format_args`), so the broker never runs a moment without them.

Java 17 Kafka reads the key store as PEM (``ssl.keystore.type=PEM``): one file holding the unencrypted
PKCS#8 private key and then the certificate, with no ``ssl.key.password`` (checked against Kafka 4.3 in
tests/deploy/test_kafka_security.py). Everything holding a password or a key is written 0600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgebridge.deploy.pki import Issued, issue
from edgebridge.topics import KafkaTopics

__all__ = [
    "CONTROLLER_USER",
    "MECHANISM",
    "USERS",
    "KafkaSecurity",
    "acl_grants",
    "client_env",
    "client_settings",
    "client_toml",
    "client_variables",
    "scram_credentials",
    "scram_format_args",
    "server_properties",
    "write_kafka_security",
]

MECHANISM = "SCRAM-SHA-512"
# admin is the super user (operators, `edgebridge topics`); the others get what kafka_acls grants them
USERS = ("admin", "bridge", "enricher", "sink")
CONTROLLER_USER = "controller"
SASL_LISTENER = "SASL_SSL"
CONTROLLER_LISTENER = "CONTROLLER"


@dataclass(frozen=True)
class KafkaSecurity:
    """The files of a secured Kafka and the passwords in them.

    ``keystore`` and ``truststore`` are where this machine wrote them; ``broker_dir`` is the folder in
    which the broker sees the same files (a container's mount point), used in server.properties.
    """

    folder: Path
    keystore: Path  # private key (PKCS#8) + certificate, PEM, 0600
    truststore: Path  # the CA certificate, PEM
    passwords: Mapping[str, str]  # SCRAM user -> password
    controller_password: str
    broker_dir: Path

    def client_settings(self, user: str, bootstrap: str, ca_location: str | Path | None = None
                        ) -> dict[str, str]:
        return client_settings(user, self.passwords[user], bootstrap, ca_location or self.truststore)


def _password() -> str:
    # 32 URL-safe characters: no quoting needed in server.properties, JAAS, --add-scram or env files
    return secrets.token_urlsafe(24)


def _write(path: Path, data: bytes | str, secret: bool) -> Path:
    """Write a file whose mode is 0600 from its creation on when ``secret`` (never readable by others,
    not even for a moment), 0644 otherwise."""
    raw = data.encode() if isinstance(data, str) else data
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    return path


def write_kafka_security(
    ca: Issued,
    hosts: Sequence[str],
    out_dir: str | Path,
    *,
    clients_dir: str | Path | None = None,
    broker_dir: str | Path | None = None,
    bootstrap: str | None = None,
    client_ca_location: str | Path | None = None,
    users: Sequence[str] = USERS,
) -> KafkaSecurity:
    """Write a secured Kafka's files and return what was written.

    ``hosts`` are the names and addresses clients use to reach the broker (the certificate's subject
    alternative names: the clients verify them). ``out_dir`` gets the broker's files, in the layout
    `deploy/kafka/kafka-entrypoint.sh` reads from ``/etc/kafka/secrets``:

    * ``server.pem`` (0600): the broker's private key (PKCS#8) then its certificate, its PEM key store;
    * ``ca.pem``: the CA, its trust store (the broker is a client of itself over SASL_SSL);
    * ``server.properties`` (0600): the security lines, appended to the shipped server.properties
      (a key given twice takes the last, so these override a plainer shipped setting);
    * ``scram-users`` (0600): one ``SCRAM-SHA-512=[name=...,password=...]`` a line, each an
      ``--add-scram`` of ``kafka-storage format``.

    ``clients_dir`` (default ``out_dir``; keep it out of the broker's mount) gets per user
    ``<user>.env`` (EDGEBRIDGE_KAFKA_* lines for a compose env_file), ``<user>.toml`` (its ``[kafka]``
    section, for ``--config``) and ``<user>.password``, all 0600.

    ``broker_dir`` is where the broker sees ``out_dir`` (default: ``out_dir`` itself), written into
    server.properties; ``bootstrap`` and ``client_ca_location`` are what the clients' files say (default:
    the first host on 9092, and ``ca.pem`` in ``out_dir``).
    """
    if "admin" not in users:
        raise ValueError("users must include admin: the super user that creates topics and ACLs")
    if not hosts:
        raise ValueError("at least one host name or address for the broker's certificate")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    clients = Path(clients_dir) if clients_dir is not None else folder
    clients.mkdir(parents=True, exist_ok=True)
    server = issue(ca, hosts[0], list(hosts))
    keystore = _write(folder / "server.pem", server.key_pem + server.cert_pem, secret=True)
    truststore = _write(folder / "ca.pem", ca.cert_pem, secret=False)
    passwords = {user: _password() for user in users}
    security = KafkaSecurity(folder, keystore, truststore, passwords, _password(),
                             Path(broker_dir) if broker_dir is not None else folder)
    props = server_properties(security)
    _write(folder / "server.properties",
           "# edgebridge deploy: Kafka's security settings, after the shipped server.properties\n"
           + "".join(f"{k}={v}\n" for k, v in props.items()), secret=True)
    _write(folder / "scram-users", "".join(f"{spec}\n" for spec in scram_credentials(passwords)),
           secret=True)
    address = bootstrap or f"{hosts[0]}:9092"
    ca_location = client_ca_location or truststore
    for user, password in passwords.items():
        settings = client_settings(user, password, address, ca_location)
        _write(clients / f"{user}.password", password + "\n", secret=True)
        _write(clients / f"{user}.env", client_env(settings), secret=True)
        _write(clients / f"{user}.toml", client_toml(settings), secret=True)
    return security


def server_properties(security: KafkaSecurity) -> dict[str, str]:
    """The broker's security settings: listener protocols, SASL, TLS files, the authorizer.

    The caller adds ``listeners`` (``SASL_SSL://...`` and ``CONTROLLER://...``) and
    ``advertised.listeners`` (``SASL_SSL://...``), which depend on where the broker runs.
    """
    admin_jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                  f'username="admin" password="{security.passwords["admin"]}";')
    cpw = security.controller_password
    controller_jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                       f'username="{CONTROLLER_USER}" password="{cpw}" user_{CONTROLLER_USER}="{cpw}";')
    ssl_dir = security.broker_dir
    return {
        "listener.security.protocol.map": f"{SASL_LISTENER}:SASL_SSL,{CONTROLLER_LISTENER}:SASL_PLAINTEXT",
        "inter.broker.listener.name": SASL_LISTENER,
        "controller.listener.names": CONTROLLER_LISTENER,
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        # the broker is a client of itself (transaction markers, ...): as admin, over SCRAM
        f"listener.name.{SASL_LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config": admin_jaas,
        "sasl.mechanism.controller.protocol": "PLAIN",
        f"listener.name.{CONTROLLER_LISTENER.lower()}.sasl.enabled.mechanisms": "PLAIN",
        f"listener.name.{CONTROLLER_LISTENER.lower()}.plain.sasl.jaas.config": controller_jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(ssl_dir / security.keystore.name),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ssl_dir / security.truststore.name),
        "ssl.client.auth": "none",  # clients authenticate with SCRAM, not certificates
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:admin;User:{CONTROLLER_USER}",
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_credentials(passwords: Mapping[str, str]) -> list[str]:
    """Each user's ``SCRAM-SHA-512=[name=...,password=...]``: what ``--add-scram`` takes."""
    return [f"{MECHANISM}=[name={user},password={password}]" for user, password in passwords.items()]


def scram_format_args(passwords: Mapping[str, str]) -> list[str]:
    """``kafka-storage format`` arguments that create the SCRAM users with the storage."""
    return [arg for spec in scram_credentials(passwords) for arg in ("--add-scram", spec)]


def client_settings(user: str, password: str, bootstrap: str, ca_location: str | Path) -> dict[str, str]:
    """A component's ``[kafka]`` settings: bootstrap, and librdkafka's SASL_SSL keys."""
    return {
        "bootstrap": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(ca_location),
    }


def client_variables(settings: Mapping[str, str]) -> dict[str, str]:
    """The settings as EDGEBRIDGE_KAFKA_* variables (edgebridge.config reads ``_`` as ``.`` after ``__``)."""
    out = {}
    for key, value in settings.items():
        if key == "bootstrap":
            out["EDGEBRIDGE_KAFKA_BOOTSTRAP"] = value
        else:
            out[f"EDGEBRIDGE_KAFKA_LIBRDKAFKA__{key.upper().replace('.', '_')}"] = value
    return out


def client_env(settings: Mapping[str, str]) -> str:
    """:func:`client_variables` as the lines of an env file."""
    return "".join(f"{name}={value}\n" for name, value in client_variables(settings).items())


def client_toml(settings: Mapping[str, str]) -> str:
    """The settings as a ``[kafka]`` TOML section (for ``--config``)."""
    import json  # a TOML basic string is a JSON string for these characters

    body = "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in settings.items() if k != "bootstrap")
    return f"[kafka]\nbootstrap = {json.dumps(settings['bootstrap'])}\n\n[kafka.librdkafka]\n{body}"


def acl_grants(topics: KafkaTopics | None = None) -> dict[str, list[str]]:
    """Each component user's ACLs, one readable line each (``User:bridge WRITE topic iot.events.raw``),
    for a deployment to show or keep; `edgebridge topics acls` applies them to a running cluster.

    Read from the components' code (:func:`edgebridge.kafka_acls.component_grants`), so this needs the
    ``[cloud]`` extra besides ``[deploy]``.
    """
    from edgebridge.kafka_acls import AclSettings, component_grants

    out: dict[str, list[str]] = {}
    for grant in component_grants(topics or KafkaTopics(), AclSettings()):
        out.setdefault(grant.principal.removeprefix("User:"), []).append(str(grant))
    return out
