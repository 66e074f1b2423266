"""Renamed configuration keys: the old name keeps working, with a one-line warning naming the new one.

A component's configuration class lists its renames as a class attribute, old dotted key to new::

    @dataclass(frozen=True)
    class BridgeConfig:
        renamed_keys: ClassVar[Mapping[str, str]] = {"uplink.raw_topic": "topics.raw"}

In each source (the TOML file, the environment, ``overrides``) a value under the old key is moved to
the new key before loading, so the usual precedence applies between sources. The old and the new key
both set in the same source is a :class:`ConfigError` naming both. Environment variables are renamed
the same way: ``EDGEBRIDGE_UPLINK_RAW_TOPIC`` is read as ``EDGEBRIDGE_TOPICS_RAW``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from edgebridge.errors import ConfigError

__all__ = ["apply_renames", "env_var"]

log = logging.getLogger("edgebridge.config")


def env_var(key: str, prefix: str) -> str:
    """The environment variable of dotted ``key``: ``uplink.raw_topic`` -> ``EDGEBRIDGE_UPLINK_RAW_TOPIC``."""
    return prefix + key.replace(".", "_").upper()


def apply_renames(
    renames: Mapping[str, str], data: dict[str, Any], env: Mapping[str, str], over: dict[str, Any],
    env_prefix: str,
) -> tuple[dict[str, Any], Mapping[str, str], dict[str, Any]]:
    """``(data, env, over)`` with every old key of ``renames`` moved to its new key (copies; the
    arguments are not changed). Each old key found is logged once as a warning."""
    if not renames:
        return data, env, over
    data, over = _copy(data), _copy(over)
    env_out: dict[str, str] | None = None
    for old, new in renames.items():
        for table in (data, over):
            _move(table, old, new)
        old_var, new_var = env_var(old, env_prefix), env_var(new, env_prefix)
        if old_var in env:
            if new_var in env:
                raise ConfigError(new, f"both {old_var} and {new_var} are set: keep only {new_var}")
            log.warning("%s is deprecated: use %s", old_var, new_var)
            env_out = env_out if env_out is not None else dict(env)
            env_out[new_var] = env_out.pop(old_var)
    return data, env if env_out is None else env_out, over


def _copy(table: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in table.items()}


def _move(table: dict[str, Any], old: str, new: str) -> None:
    *old_parents, old_leaf = old.split(".")
    node: Any = table
    for part in old_parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or old_leaf not in node:
        return
    value = node.pop(old_leaf)
    *new_parents, new_leaf = new.split(".")
    target: Any = table
    for part in new_parents:
        target = target.setdefault(part, {}) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        raise ConfigError(new, f"{old} moved here, but {'.'.join(new_parents)} is not a table")
    if new_leaf in target:
        raise ConfigError(new, f"both {old} and {new} are set: keep only {new}")
    log.warning("config key %s is deprecated: use %s", old, new)
    target[new_leaf] = value
