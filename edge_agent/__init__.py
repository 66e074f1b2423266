"""The edge agent: sensors to a durable SQLite outbox to MQTT (see docs/architecture.md).

Modules: :mod:`~edge_agent.outbox` (the durable bounded queue), :mod:`~edge_agent.forwarder` and
:mod:`~edge_agent.mqtt_link` (QoS 1 to the broker), :mod:`~edge_agent.sources` (simulated, serial,
local ingest), :mod:`~edge_agent.commands`, :mod:`~edge_agent.clock`, :mod:`~edge_agent.sdnotify`,
:mod:`~edge_agent.agent` (the loop), :mod:`~edge_agent.cli` (``edgebridge agent``) and
:mod:`~edge_agent.install` (``edgebridge agent install``: the systemd unit and config of ``data/``).

Security (guarantee 6). The agent connects with TLS (``mqtts://``, ``ca_file``) and authenticates as its
device: ``username`` = ``device_id`` with a password, or a client certificate whose CN is the device id.
That a device can publish only under its own id is enforced by the broker, not by the agent: with
Mosquitto, ``pattern write devices/%u/events`` and the like in the ``acl_file`` (plus
``use_identity_as_username true`` in certificate mode), as ``edgebridge deploy init`` writes it for the
shipped ``deploy/mosquitto/mosquitto.conf`` (docs/deploy.md). The password is a
:class:`~edgebridge.config.Secret`: never printed by ``--print-config``, never logged; under systemd it
comes from the credential ``mqtt-password`` (``LoadCredential=``), elsewhere from ``password_file`` or
``password`` (:class:`~edgebridge.settings.MqttSettings`).
"""

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig, OutboxConfig
from edge_agent.outbox import CommitResult, Outbox, OutboxError, read_status

__all__ = ["Agent", "AgentConfig", "CommitResult", "Outbox", "OutboxConfig", "OutboxError", "read_status"]
