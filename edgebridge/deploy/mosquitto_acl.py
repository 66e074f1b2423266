"""Mosquitto's ACL file for edgebridge: every device confined to its own topics, the bridge's users to theirs.

Devices need no line of their own: ``pattern`` lines apply to every user, ``%u`` standing for the
username, which is the device id (and, with ``use_username_as_clientid``, the client id too). So adding
a device never changes this file. A device writes its events, status and command replies and reads its
commands and receipts; it never writes a receipt (it would delete its own events before Kafka has
them) nor a command. Each bridge replica has two users, one per MQTT connection: the uplink reads what
the devices send and writes receipts, the downlink writes commands. The ``health`` user of compose's
health check reads the broker's ``$SYS`` topics and nothing else. The topics are those of
:mod:`edgebridge.topics`, so the ACL and the code cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgebridge.topics import COMMAND_RESPONSE, COMMANDS, EVENTS, RECEIPTS, STATUS, subscription

__all__ = ["HEALTH_USER", "BridgeUsers", "acl_text", "bridge_users"]

HEALTH_USER = "health"

# (access, kind) of a device's own topics, {prefix}/%u/{kind}
DEVICE_RIGHTS = (("write", EVENTS), ("write", STATUS), ("write", COMMAND_RESPONSE),
                 ("read", COMMANDS), ("read", RECEIPTS))
UPLINK_RIGHTS = (("read", EVENTS), ("read", STATUS), ("read", COMMAND_RESPONSE), ("write", RECEIPTS))
DOWNLINK_RIGHTS = (("write", COMMANDS),)


@dataclass(frozen=True)
class BridgeUsers:
    """The two MQTT users of bridge replica ``replica`` (1, 2, ...)."""

    replica: int

    @property
    def uplink(self) -> str:
        return f"bridge-uplink-{self.replica}"

    @property
    def downlink(self) -> str:
        return f"bridge-downlink-{self.replica}"


def bridge_users(replicas: int) -> list[BridgeUsers]:
    return [BridgeUsers(n) for n in range(1, replicas + 1)]


def acl_text(prefix: str, bridges: Sequence[BridgeUsers]) -> str:
    """The ACL file for devices under ``prefix`` and the given bridge replicas."""
    lines = [
        "# Written by `edgebridge deploy init`. Devices: the username is the device id; %u stands for it.",
        *(f"pattern {access} {prefix}/%u/{kind}" for access, kind in DEVICE_RIGHTS),
    ]
    for users in bridges:
        lines += ["", f"# bridge replica {users.replica}: its uplink connection", f"user {users.uplink}"]
        lines += [f"topic {access} {subscription(kind, prefix)}" for access, kind in UPLINK_RIGHTS]
        lines += [f"# bridge replica {users.replica}: its downlink connection", f"user {users.downlink}"]
        lines += [f"topic {access} {subscription(kind, prefix)}" for access, kind in DOWNLINK_RIGHTS]
    lines += ["", "# compose's health check: a round trip through the TLS listener", f"user {HEALTH_USER}",
              "topic read $SYS/#"]
    return "\n".join(lines) + "\n"
