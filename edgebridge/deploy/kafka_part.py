"""The Kafka part of `edgebridge deploy init`: the broker's secrets and each component's Kafka settings.

``kafka/`` is what the broker container mounts at ``/etc/kafka/secrets`` (deploy/kafka/kafka-entrypoint.sh
reads it: key store, trust store, the security lines of server.properties, the SCRAM users), given to
the image's user when we run as root. The components' ``EDGEBRIDGE_KAFKA_*`` variables (SASL_SSL as
their own SCRAM user, the CA where the containers see it) join the env files compose reads:
``env/admin.env`` (`topics create`, `topics acls`), ``env/bridge.env`` (and ``bridge-N.env`` per replica),
``env/enricher.env``, ``env/sink.env``. ``kafka-clients/<user>.toml`` holds the same settings with the CA
at its path on this machine, for the operator's own commands (``edgebridge topics create --config
DIR/kafka-clients/admin.toml``, ``edgebridge simulate audit --config ...``). The files and what each
setting is for are in :mod:`edgebridge.deploy.kafka_auth` and docs/deploy-kafka.md.
"""

from __future__ import annotations

import os

from edgebridge.deploy.init import Build, env_name
from edgebridge.deploy.kafka_auth import USERS, client_variables, write_kafka_security

__all__ = ["BOOTSTRAP", "BROKER_DIR", "KAFKA_UID", "init"]

# deploy/kafka/Dockerfile's user, which must read the broker's key (tests/deploy/test_deploy_init.py
# checks the two agree)
KAFKA_UID = 10002
# where the broker container sees DIR/kafka (deploy/compose.yaml)
BROKER_DIR = "/etc/kafka/secrets"
# the advertised listener of deploy/kafka/server.properties: compose runs on the host's network
BOOTSTRAP = "localhost:9092"


def init(build: Build) -> None:
    plan, root = build.plan, build.root
    folder = root / "kafka"
    security = write_kafka_security(
        build.ca, plan.server_hosts, folder, clients_dir=root / "kafka-clients", broker_dir=BROKER_DIR,
        bootstrap=BOOTSTRAP, client_ca_location=(root / "ca.crt").resolve(),
    )
    for user in USERS:
        settings = security.client_settings(user, BOOTSTRAP, plan.cloud_ca_file)
        variables = client_variables(settings)
        names = [env_name("bridge", r) for r in range(1, plan.bridges + 1)] if user == "bridge" else [user]
        for name in names:
            build.env_file(name).update(variables)
    if os.geteuid() == 0:  # only root may give files away; otherwise the CLI prints the chown to run
        for path in (folder, *folder.iterdir()):
            os.chown(path, KAFKA_UID, KAFKA_UID)
