"""`edgebridge topics create|acls`: the Kafka topics of the wire contract, and the components' ACLs.

Both read the ``[kafka]`` section every component reads (``--config FILE``, ``EDGEBRIDGE_KAFKA_*``), so
SASL/SSL come through the same librdkafka settings; ``--bootstrap`` still overrides the address. Both
are idempotent and have a ``--dry-run`` that reads the cluster, prints what would change and changes
nothing. What the topics look like: :mod:`edgebridge.topic_plan`; which ACLs: :mod:`edgebridge.kafka_acls`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgebridge.arguments import positive_int
from edgebridge.config import add_config_arguments, config_or_exit_code
from edgebridge.errors import ConfigError, EdgeBridgeError
from edgebridge.kafka_acls import AclSettings, apply_grants, component_grants
from edgebridge.ops.config import RedriveSettings
from edgebridge.settings import KafkaSettings
from edgebridge.topic_plan import (
    ExistingTopic,
    TopicDiff,
    TopicSpec,
    align_state,
    diff_topic,
    wanted_topics,
)
from edgebridge.topics import KafkaTopics

__all__ = ["AdminError", "TopicPlan", "TopicsConfig", "ensure_topics", "main", "plan_topics"]

TIMEOUT = 30.0
# librdkafka's words for a refusal no retry cures (its error codes for them vary: _AUTHENTICATION, _SSL,
# or _TRANSPORT with this text)
_REFUSALS = ("Authentication failed", "SSL handshake failed", "certificate verify failed",
             "SASL authentication error")


class AdminError(EdgeBridgeError):
    """The cluster refused or could not be reached: one line for the operator."""


@dataclass(frozen=True)
class TopicsConfig:
    """What `edgebridge topics` reads: the components' ``[kafka]`` and ``[topics]``, ``[acls]``, and the
    tools' ``[redrive]`` (its marker topic is one of the topics)."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    acls: AclSettings = field(default_factory=AclSettings)
    redrive: RedriveSettings = field(default_factory=RedriveSettings)


class _Admin:
    """An AdminClient that remembers librdkafka's last error, so that a refusal (a wrong password, an
    untrusted certificate) is told as such instead of as a bare timeout."""

    def __init__(self, kafka: KafkaSettings) -> None:
        from confluent_kafka.admin import AdminClient

        self.errors: list[str] = []
        config = kafka.client_config({"error_cb": self._on_error})
        # a command, not a service: no log setup, so librdkafka's lines would reach stderr as bare
        # "kafka client log"; its errors come through error_cb into the one line we print instead
        config.pop("logger", None)
        self.client = AdminClient({"log_level": 0, **config})

    def _on_error(self, error: Any) -> None:
        self.errors.append(str(error.str() if hasattr(error, "str") else error))

    def refused(self) -> bool:
        """True once the broker refused us for good: credentials or TLS, which no retry cures."""
        return any(hint in e for e in self.errors for hint in _REFUSALS)

    def metadata(self) -> Any:
        """The cluster's metadata; a refusal ends the wait at once instead of after TIMEOUT."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                return self.client.list_topics(timeout=2)
            except Exception as exc:
                self.client.poll(0)  # deliver the error callbacks waiting in the queue
                if self.refused() or time.monotonic() >= deadline:
                    raise self.failure("cannot read the cluster's metadata", exc) from None

    def failure(self, what: str, exc: BaseException) -> AdminError:
        detail = exc.args[0] if exc.args else exc
        text = str(detail.str() if hasattr(detail, "str") else detail)
        last = next((e for e in reversed(self.errors) if e != text), None)
        return AdminError(f"{what}: {text}" + (f" (last error: {last})" if last else ""))

    def call(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # KafkaException, timeouts: one line, with librdkafka's reason
            self.client.poll(0)  # deliver the error callbacks waiting in the queue
            raise self.failure(what, exc) from None


def _existing(admin: _Admin, names: list[str]) -> tuple[int, dict[str, ExistingTopic]]:
    """The cluster's broker count and, for each of ``names`` that exists, what it is now."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    cluster = admin.metadata()
    present = [n for n in names if n in cluster.topics and cluster.topics[n].error is None]
    configs: dict[str, dict[str, str]] = {}
    if present:
        futures = admin.client.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present],
                                                request_timeout=TIMEOUT)
        for resource, future in futures.items():
            entries = admin.call(f"cannot read the settings of {resource.name}",
                                 lambda f=future: f.result(TIMEOUT))
            configs[resource.name] = {k: e.value for k, e in entries.items()}
    out = {}
    for name in present:
        parts = cluster.topics[name].partitions
        rf = min((len(p.replicas) for p in parts.values()), default=0)
        out[name] = ExistingTopic(len(parts), rf, configs.get(name, {}))
    return len(cluster.brokers), out


@dataclass(frozen=True)
class TopicPlan:
    missing: list[TopicSpec]  # to create
    diffs: list[TopicDiff]  # existing topics that differ
    notes: list[str]  # what is reported and left as it is


def plan_topics(admin: _Admin, topics: KafkaTopics, partitions: int, replication_factor: int,
                marker_topic: str = RedriveSettings.marker_topic) -> TopicPlan:
    """What to create and change; AdminError when the replication factor asked exceeds the brokers."""
    specs = wanted_topics(topics, partitions, replication_factor, marker_topic)
    brokers, existing = _existing(admin, [s.name for s in specs])
    if replication_factor > brokers:
        raise AdminError(f"replication factor {replication_factor} needs at least {replication_factor} "
                         f"brokers, the cluster has {brokers}: give --replication-factor at most the "
                         "number of brokers")
    specs, notes = align_state(specs, topics, existing)
    missing = [s for s in specs if s.name not in existing]
    diffs = [d for s in specs if s.name in existing and not (d := diff_topic(s, existing[s.name])).empty]
    return TopicPlan(missing, diffs, notes)


def _apply(admin: _Admin, missing: list[TopicSpec], diffs: list[TopicDiff]) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

    if missing:
        new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                        config=dict(s.config)) for s in missing]
        for name, future in admin.client.create_topics(new, request_timeout=TIMEOUT).items():
            try:
                future.result(TIMEOUT)
            except KafkaException as exc:
                # another `topics create` (a second replica of the stack) made it first: that is done
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise admin.failure(f"cannot create {name}", exc) from None
    set_op = AlterConfigOpType.SET
    changes = [ConfigResource(ResourceType.TOPIC, d.name, incremental_configs=[
        ConfigEntry(k, wanted, incremental_operation=set_op) for k, (_, wanted) in d.config.items()
    ]) for d in diffs if d.config]
    if changes:
        for resource, future in admin.client.incremental_alter_configs(
                changes, request_timeout=TIMEOUT).items():
            admin.call(f"cannot change the settings of {resource.name}", lambda f=future: f.result(TIMEOUT))


def ensure_topics(kafka: str | KafkaSettings, topics: KafkaTopics | None = None, partitions: int = 3,
                  replication_factor: int = 1, only: Collection[str] | None = None,
                  marker_topic: str = RedriveSettings.marker_topic) -> list[str]:
    """Create whichever contract topics do not exist yet and set the settings we own on those that do;
    return the names created. ``kafka`` is a bootstrap address or the ``[kafka]`` settings. ``only``:
    these topic names and no other (a replay's own topics, the live ones left as they are)."""
    settings = KafkaSettings(bootstrap=kafka) if isinstance(kafka, str) else kafka
    admin = _Admin(settings)
    plan = plan_topics(admin, topics or KafkaTopics(), partitions, replication_factor, marker_topic)
    missing = [s for s in plan.missing if only is None or s.name in only]
    _apply(admin, missing, [d for d in plan.diffs if only is None or d.name in only])
    return [s.name for s in missing]


def _describe(plan: TopicPlan, dry_run: bool) -> list[str]:
    missing, diffs = plan.missing, plan.diffs
    create, change = ("would create", "would set") if dry_run else ("created", "set")
    lines = [f"{create} {spec}" for spec in missing] + plan.notes
    for d in diffs:
        lines += [f"{change} {d.name}: {k}={wanted} (was {now if now is not None else 'unset'})"
                  for k, (now, wanted) in d.config.items()]
        lines += [f"note {d.name}: {note}" for note in d.notes]
    if not missing and not any(d.config for d in diffs):
        lines.append("nothing to create or change: every topic exists with its settings")
    return lines


def _create(config: TopicsConfig, args: argparse.Namespace) -> list[str]:
    admin = _Admin(config.kafka)
    plan = plan_topics(admin, config.topics, args.partitions, args.replication_factor,
                       config.redrive.marker_topic)
    if not args.dry_run:
        _apply(admin, plan.missing, plan.diffs)
    return _describe(plan, args.dry_run)


def _acls(config: TopicsConfig, args: argparse.Namespace) -> list[str]:
    admin = _Admin(config.kafka)
    grants = component_grants(config.topics, config.acls)
    try:
        missing, present, others = apply_grants(admin.client, grants, dry_run=args.dry_run, timeout=TIMEOUT)
    except Exception as exc:
        admin.client.poll(0)
        raise admin.failure("cannot read or create ACLs", exc) from None
    verb = "would create" if args.dry_run else "created"
    lines = [f"{verb} {g}" for g in missing] + [f"exists {g}" for g in present]
    lines += [f"note: {b.principal} also has {b.operation.name} {b.restype.name.lower()} {b.name} "
              f"({b.resource_pattern_type.name.lower()}, {b.permission_type.name}), not ours: left alone"
              for b in others]
    return lines


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The Kafka side of the wire contract: its topics, and the ACLs of the bridge, the "
        "enricher and the sinks. Both read [kafka] (SASL/SSL as librdkafka settings), [topics] and [acls] "
        "from --config and EDGEBRIDGE_* like every component, and are idempotent.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="{create,acls}")
    create = sub.add_parser(
        "create", help="create the missing topics, set the settings we own on existing ones",
        description="Create whichever contract topics do not exist yet: compacted iot.devices and "
        "iot.enricher.state, the redrive's markers ([redrive] marker_topic), the state topic partitioned "
        "like the raw topic; with a replication factor above 1, min.insync.replicas = RF-1. Existing "
        "topics get the settings we own; partitions are never added and the replication factor never "
        "changed (reported instead).")
    acls = sub.add_parser(
        "acls", help="grant the components' least-privilege ACLs (the broker's authorizer must be on)",
        description="Create the ACLs the bridge, the enricher and the sinks need, and no more "
        "(see docs/deploy-kafka.md); ACLs already there are kept, others of these users reported.")
    for p in (create, acls):
        add_config_arguments(p)
        p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: [kafka] bootstrap, "
                       "$EDGEBRIDGE_KAFKA_BOOTSTRAP, 127.0.0.1:9092)")
        p.add_argument("--dry-run", action="store_true",
                       help="read the cluster and print what would be created or changed; change nothing")
    create.add_argument("--partitions", type=positive_int, default=3,
                        help="partitions of the raw, processed, commands and state topics (default 3)")
    create.add_argument("--replication-factor", type=positive_int, default=1,
                        help="replicas of every topic (default 1; at most the brokers available); "
                        "above 1, min.insync.replicas is RF-1")
    return parser


def main(argv: Sequence[str], prog: str = "edgebridge topics") -> int:
    args = _parser(prog).parse_args(list(argv))
    config = config_or_exit_code(TopicsConfig, args, prog)
    if isinstance(config, int):
        return config
    if args.bootstrap:
        config = dataclasses.replace(config, kafka=KafkaSettings(args.bootstrap, config.kafka.librdkafka))
    try:
        lines = (_create if args.action == "create" else _acls)(config, args)
    except (AdminError, ConfigError) as exc:
        print(f"{prog} {args.action}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    if args.dry_run:
        print("dry run: nothing was changed")
    return 0
