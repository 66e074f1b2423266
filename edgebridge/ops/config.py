"""The configuration the operator's tools read: the same ``[kafka]`` and ``[topics]`` as the components.

An operator points a tool at a component's own TOML file (``--config /etc/edgebridge/enricher.toml``)
or a small file of its own, and the environment (``EDGEBRIDGE_KAFKA_BOOTSTRAP``,
``EDGEBRIDGE_KAFKA_LIBRDKAFKA__SASL_PASSWORD``) goes on top, as for the components.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebridge.config import CONFIG_ENV
from edgebridge.config import config_or_exit_code as load_or_exit
from edgebridge.settings import KafkaSettings
from edgebridge.topics import KafkaTopics

__all__ = ["OpsConfig", "RedriveSettings", "config_or_exit_code"]


@dataclass(frozen=True)
class RedriveSettings:
    """``[redrive]``: where ``edgebridge deadletters redrive`` remembers what it redrove."""

    # compacted, key = "{topic}/{partition}/{offset}" of a dead letter: written in the same Kafka
    # transaction as the redriven record, so a second redrive skips exactly what the first one moved
    marker_topic: str = "iot.events.deadletter.redriven"
    transactional_id: str = "edgebridge-redrive"


@dataclass(frozen=True)
class OpsConfig:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    redrive: RedriveSettings = field(default_factory=RedriveSettings)


# the sections of a component's file the tools read; the rest ([mqtt], [pipeline], instance_id ...) is
# the component's, and ignored here rather than refused as unknown
SECTIONS = ("kafka", "topics", "redrive")


def config_or_exit_code(args: argparse.Namespace, prog: str) -> OpsConfig | int:
    """:func:`edgebridge.config.config_or_exit_code` for the tools, on any component's file.

    ``--config /etc/edgebridge/enricher.toml`` works: its ``[kafka]`` (SASL, TLS), ``[topics]`` and
    ``[redrive]`` are taken, every other key is left to its component; the environment goes on top.
    """
    path = getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or None
    if path is None:
        return _load(args, prog)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"{prog}: {path}: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgebridge-ops-") as tmp:
        ours = Path(tmp) / "ops.toml"
        ours.write_text(_toml({k: v for k, v in data.items() if k in SECTIONS}))
        ours.chmod(0o600)  # it may hold a SASL password
        return _load(argparse.Namespace(**{**vars(args), "config": str(ours)}), prog)


def _load(args: argparse.Namespace, prog: str) -> OpsConfig | int:
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}  # the path is decided above
    return load_or_exit(OpsConfig, args, prog, env=env)


def _toml(tables: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """Tables of scalars and tables as TOML (JSON's strings, numbers and booleans are TOML's too)."""
    out = []
    scalars = {k: v for k, v in tables.items() if not isinstance(v, dict)}
    if path and scalars:
        out.append("[" + ".".join(json.dumps(p) for p in path) + "]")
    out += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in scalars.items()]
    for key, value in tables.items():
        if isinstance(value, dict):
            out.append(_toml(value, (*path, key)))
    return "\n".join(out) + "\n"
