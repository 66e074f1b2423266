"""Least-privilege Kafka ACLs per component, and applying them idempotently (`edgebridge topics acls`).

What each component really does in Kafka, read from its code (so a topic, group or transactional id
renamed in a component's configuration is renamed here by the same ``[topics]`` and ``[acls]`` keys):

* bridge (``bridge/kafka_sink.py``, ``bridge/downlink.py``): an idempotent producer writing ``raw``,
  ``status``, ``command_responses`` and ``deadletter``; a consumer of ``commands`` in the group
  ``downlink.group_id`` (``edgebridge-bridge-downlink``), committing its offsets. Kafka 3.0+ lets a
  producer that may WRITE a topic be idempotent without the cluster's IDEMPOTENT_WRITE (KIP-679).
* enricher (``enricher/processor.py``, ``state.py``, ``registry.py``, ``sweep.py``): reads ``raw`` in the
  group ``group_id`` (its offsets go into its transactions), reads ``devices`` and ``enricher_state`` with
  assigned readers whose librdkafka ``group.id`` is never committed but whose coordinator librdkafka
  still looks up (DESCRIBE on those two groups); writes
  ``processed``, ``alerts``, ``deadletter`` and ``enricher_state`` in transactions under
  ``transactional.id`` = ``{transactional_id_prefix}-{instance_id}``: WRITE on that prefix.
* aggregator (``enricher/aggregates/``), run with the enricher's configuration file and so as the
  enricher's user: reads ``processed`` in its group ``edgebridge-aggregator`` (offsets in its
  transactions) and ``aggregates_state`` with an assigned reader (DESCRIBE on its group); writes
  ``aggregates``, ``aggregates_state`` and ``deadletter`` in transactions under ``transactional.id``
  ``edgebridge-aggregator-{instance_id}``.
* sink (``enricher/sinks/base.py``): reads ``processed`` in its group; its offsets live in its database,
  so it commits nothing to Kafka. Several sinks (SQLite and PostgreSQL) take groups under one prefix.

``admin`` is a super user (``server.properties``), so it needs no ACL: `edgebridge topics`,
`edgebridge devices` (writes ``devices``) and whoever writes ``commands`` use it, and so do the
operator's tools: the redrive's marker topic (``[redrive] marker_topic``) is read and written by
`edgebridge deadletters` alone, never by a component, so no component user is granted it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from edgebridge.errors import ConfigError
from edgebridge.topics import KafkaTopics

__all__ = ["AclSettings", "Grant", "apply_grants", "component_grants"]

Resource = Literal["topic", "group", "transactional_id"]
Operation = Literal["read", "write", "describe"]
Pattern = Literal["literal", "prefixed"]


@dataclass(frozen=True)
class AclSettings:
    """``[acls]``: the components' Kafka users, and their group and transactional ids when a
    component's configuration changes them (unset: that component's default, read from its code)."""

    bridge_user: str = "bridge"
    enricher_user: str = "enricher"
    sink_user: str = "sink"
    bridge_group: str | None = None  # the bridge's downlink.group_id
    enricher_group: str | None = None  # the enricher's group_id
    enricher_transactional_id_prefix: str | None = None  # the enricher's transactional_id_prefix
    sink_group_prefix: str | None = None  # every sink's group_id starts with it (default: the sinks')

    def validate(self) -> None:
        for key in ("bridge_user", "enricher_user", "sink_user"):
            value = getattr(self, key)
            if not value or value == "admin":
                raise ConfigError(key, f"must name a user other than admin, not {value!r}")
        for key in ("bridge_group", "enricher_group", "enricher_transactional_id_prefix",
                    "sink_group_prefix"):
            if getattr(self, key) == "":
                raise ConfigError(key, "must not be empty (a prefix of '' would match everything)")


@dataclass(frozen=True, order=True)
class Grant:
    """ALLOW ``operation`` on one resource to ``principal`` (from any host)."""

    principal: str  # "User:bridge"
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def __str__(self) -> str:
        prefix = "*" if self.pattern == "prefixed" else ""
        return f"{self.principal} {self.operation.upper()} {self.resource} {self.name}{prefix}"


def component_grants(topics: KafkaTopics, acls: AclSettings) -> list[Grant]:
    """Every ACL the bridge, the enricher and the sinks need, and no other."""
    from edgebridge import kafka_ids as ids

    bridge, enr, sink = f"User:{acls.bridge_user}", f"User:{acls.enricher_user}", f"User:{acls.sink_user}"

    def topic(principal: str, op: Operation, *names: str) -> list[Grant]:
        return [Grant(principal, "topic", n, "literal", op) for n in names]

    grants = [
        *topic(bridge, "write", topics.raw, topics.status, topics.command_responses, topics.deadletter),
        *topic(bridge, "read", topics.commands),
        Grant(bridge, "group", acls.bridge_group or ids.BRIDGE_DOWNLINK_GROUP, "literal", "read"),
        *topic(enr, "read", topics.raw, topics.devices, topics.enricher_state),
        *topic(enr, "write", topics.processed, topics.alerts, topics.deadletter, topics.enricher_state),
        Grant(enr, "group", acls.enricher_group or ids.ENRICHER_GROUP, "literal", "read"),
        # the registry's and the state's readers are assigned and never commit, but librdkafka still
        # looks up their group's coordinator (FindCoordinator: DESCRIBE; refused, the registry load
        # logs GROUP_AUTHORIZATION_FAILED): DESCRIBE only, no READ (which would allow offset commits)
        *(Grant(enr, "group", g, "literal", "describe")
          for g in (ids.ENRICHER_STATE_READER_GROUP, ids.REGISTRY_READER_GROUP)),
        # transactional.id is "{prefix}-{instance_id}": the prefix with its dash, so that another
        # application's "edgebridge-enricherX" ids stay out of reach
        Grant(enr, "transactional_id",
              (acls.enricher_transactional_id_prefix or ids.ENRICHER_TRANSACTIONAL_ID_PREFIX) + "-",
              "prefixed", "write"),
        # the aggregator, as the enricher's user (it runs from the enricher's configuration file)
        *topic(enr, "read", topics.processed, topics.aggregates_state),
        *topic(enr, "write", topics.aggregates, topics.aggregates_state),
        Grant(enr, "group", ids.AGGREGATOR_GROUP, "literal", "read"),
        Grant(enr, "group", ids.AGGREGATOR_STATE_READER_GROUP, "literal", "describe"),
        Grant(enr, "transactional_id", ids.AGGREGATOR_TRANSACTIONAL_ID_PREFIX + "-", "prefixed", "write"),
        *topic(sink, "read", topics.processed, topics.aggregates),
        Grant(sink, "group", acls.sink_group_prefix or ids.SINK_GROUP, "prefixed", "read"),
    ]
    return sorted(set(grants))


def _binding(grant: Grant) -> Any:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(ResourceType[grant.resource.upper()], grant.name,
                      ResourcePatternType[grant.pattern.upper()], grant.principal, "*",
                      AclOperation[grant.operation.upper()], AclPermissionType.ALLOW)


def _grant_of(binding: Any) -> Grant | None:
    """The Grant an existing ALLOW binding for any host is, or None for anything else."""
    kinds = {"TOPIC": "topic", "GROUP": "group", "TRANSACTIONAL_ID": "transactional_id"}
    resource = kinds.get(binding.restype.name)
    pattern = binding.resource_pattern_type.name.lower()
    operation = binding.operation.name.lower()
    if (resource is None or pattern not in ("literal", "prefixed")
            or operation not in ("read", "write", "describe")
            or binding.permission_type.name != "ALLOW" or binding.host != "*"):
        return None
    return Grant(binding.principal, resource, binding.name, pattern, operation)  # type: ignore[arg-type]


def existing_acls(admin: Any, principals: Iterable[str], timeout: float = 30.0) -> dict[str, list[Any]]:
    """Every ACL binding of each principal, as the cluster holds them."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    out = {}
    for principal in sorted(set(principals)):
        # None: any name, any host (the stubs type them str; confluent-kafka documents None)
        anything: Any = None
        query = AclBindingFilter(ResourceType.ANY, anything, ResourcePatternType.ANY, principal, anything,
                                 AclOperation.ANY, AclPermissionType.ANY)
        out[principal] = list(admin.describe_acls(query, request_timeout=timeout).result(timeout))
    return out


def apply_grants(admin: Any, grants: list[Grant], *, dry_run: bool = False,
                 timeout: float = 30.0) -> tuple[list[Grant], list[Grant], list[Any]]:
    """Create the grants the cluster lacks (none with ``dry_run``).

    Returns (missing: created or, dry, to create; present: already there; others: bindings the
    principals have beyond the grants, reported and left alone: removing an operator's ACL is theirs).
    """
    held = existing_acls(admin, (g.principal for g in grants), timeout)
    have = {g for bindings in held.values() for b in bindings if (g := _grant_of(b)) is not None}
    wanted = set(grants)
    missing = [g for g in grants if g not in have]
    present = [g for g in grants if g in have]
    others = [b for bindings in held.values() for b in bindings if _grant_of(b) not in wanted]
    if missing and not dry_run:
        for future in admin.create_acls([_binding(g) for g in missing],
                                        request_timeout=timeout).values():
            future.result(timeout)
    return missing, present, others
