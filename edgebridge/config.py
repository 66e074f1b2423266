"""Configuration: one TOML file plus ``EDGEBRIDGE_*`` environment overrides, into frozen dataclasses.

A component describes its settings as a frozen dataclass in which every field has a default, so a
missing file or section is fine::

    @dataclass(frozen=True)
    class MqttConfig:
        url: str = "mqtt://127.0.0.1:1883"
        password: Secret | None = None
        qos: Literal[0, 1] = 1

    @dataclass(frozen=True)
    class KafkaConfig:
        bootstrap: str = "127.0.0.1:9092"
        librdkafka: dict[str, str] = field(default_factory=dict)   # raw passthrough

    @dataclass(frozen=True)
    class BridgeConfig:
        mqtt: MqttConfig = field(default_factory=MqttConfig)
        kafka: KafkaConfig = field(default_factory=KafkaConfig)

``main()`` builds it once and passes it down explicitly::

    parser = argparse.ArgumentParser(prog="edgebridge bridge", description="MQTT to Kafka bridge")
    add_config_arguments(parser)                      # --config PATH, --print-config
    args = parser.parse_args(argv)
    try:
        config = config_from_args(BridgeConfig, args)
    except ConfigError as exc:
        print(f"edgebridge bridge: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_config(config), end="")
        return 0

Contract:

- Precedence, lowest first: field defaults, the TOML file, the environment, ``overrides``.
- Field types: ``str``, ``int``, ``float``, ``bool``, :class:`Secret`, ``pathlib.Path``, ``Literal[...]``,
  ``list[X]`` or ``tuple[X, ...]`` of those, ``X | None``; nested dataclasses (TOML tables);
  ``dict[str, X]`` passthrough maps.
- Environment: each leaf ``a.b_c`` is read from ``EDGEBRIDGE_A_B_C`` (found by walking the schema, so
  other ``EDGEBRIDGE_*`` variables are ignored). Strings are coerced: bools accept true/false/1/0/yes/no/
  on/off, lists are comma-separated, an empty value makes an optional field ``None``.
- Passthrough maps (librdkafka settings) keep their keys verbatim; nested TOML tables are flattened with
  dots, so ``linger.ms = 5`` and ``"linger.ms" = 5`` mean the same. A key can also come from the
  environment after a double underscore, ``_`` standing for ``.``:
  ``EDGEBRIDGE_KAFKA_LIBRDKAFKA__SASL_PASSWORD`` sets ``sasl.password``. Treat the dict as read-only.
- Errors: :class:`ConfigError` whose ``key`` is the dotted setting (unknown key, wrong type, bad choice,
  unparsable environment value, whose message names the variable). A dataclass may define
  ``validate(self)``, called after loading, raising ``ConfigError`` with a key relative to itself
  (``"port"``; the loader prefixes the section) or ``ValueError``.
- Renamed keys: a class attribute ``renamed_keys`` maps old dotted keys to new ones; the old key still
  works, with a warning (:mod:`edgebridge.config_renames`).
- :func:`dump_config` renders TOML with every :class:`Secret`, and every value whose key looks secret, as
  ``"***"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
import tomllib
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, get_args, get_origin

from edgebridge import config_renames as renames
from edgebridge.config_dump import dump_config
from edgebridge.config_renames import apply_renames
from edgebridge.errors import ConfigError
from edgebridge.secret import MASK, Secret, looks_secret

__all__ = [
    "MASK",
    "Secret",
    "add_config_arguments",
    "config_from_args",
    "config_or_exit_code",
    "dump_config",
    "load_config",
    "looks_secret",
]

T = TypeVar("T")
ENV_PREFIX = "EDGEBRIDGE_"
CONFIG_ENV = "EDGEBRIDGE_CONFIG"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


# -- loading -------------------------------------------------------------------------------------------


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    sections: Collection[str] | None = None,
) -> T:
    """Build ``cls`` from defaults, the TOML file at ``path`` (if any), ``env`` (default ``os.environ``)
    and ``overrides`` (nested like the TOML, or dotted keys: ``{"mqtt.url": "..."}``).

    ``sections``: read only these top-level keys of the file and leave the rest to whoever owns it, so
    a tool can take the ``[kafka]`` of any component's file instead of refusing its other keys."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data = _read_toml(Path(path)) if path is not None else {}
    if sections is not None:
        data = {key: value for key, value in data.items() if key in sections}
    renames = getattr(cls, "renamed_keys", {})
    data, env, over = apply_renames(renames, data, os.environ if env is None else env, _nest(overrides or {}),
                                    ENV_PREFIX)
    obj, _ = _Loader(env).build(cls, cls(), (), data, over)
    _validate(obj, "")
    return typing.cast(T, obj)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from exc


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": {"d.e": 2}}`` -> ``{"a": {"b": 1}, "c": {"d": {"e": 2}}}``."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        value = _nest(value) if isinstance(value, Mapping) else value
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return out


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union field type {tp!r}: only X | None")
        return args[0], True
    return tp, False


def _is_passthrough(tp: Any) -> bool:
    return get_origin(tp) in (dict, Mapping)


class _Loader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.seen_vars: dict[str, str] = {}  # variable -> key, to catch two fields sharing one name

    def build(self, cls: Any, current: Any, path: tuple[str, ...], data: Any, over: Any) -> tuple[Any, bool]:
        """Return ``(instance, touched)``; ``touched`` says whether any source set something inside."""
        prefix = ".".join(path)
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        for source in (data, over):
            if not isinstance(source, Mapping):
                raise ConfigError(prefix, f"expected a table, got {type(source).__name__}")
            for key in source:
                if key not in names:
                    close = difflib.get_close_matches(key, names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ConfigError(_join(prefix, key), f"unknown key{hint}")
        changes: dict[str, Any] = {}
        touched = False
        for name in names:
            fpath = (*path, name)
            key, var = ".".join(fpath), ENV_PREFIX + "_".join(fpath).upper()
            base, optional = _unwrap_optional(hints[name])
            value = getattr(current, name)
            if dataclasses.is_dataclass(base):
                if over.get(name, ...) is None and optional:
                    changes[name], touched = None, True
                    continue
                start = value if value is not None else typing.cast(Any, base)()
                sub, sub_touched = self.build(base, start, fpath, data.get(name, {}), over.get(name, {}))
                if value is not None or sub_touched:
                    changes[name] = sub
                touched |= sub_touched
            elif _is_passthrough(base):
                merged = self._passthrough(base, key, var, value, data.get(name), over.get(name))
                if merged is not None:
                    changes[name], touched = merged, True
            else:
                if var in self.seen_vars:
                    raise TypeError(f"{key} and {self.seen_vars[var]} both map to {var}")
                self.seen_vars[var] = key
                if name in over:
                    changes[name] = _from_value(over[name], hints[name], key)
                elif var in self.env:
                    changes[name] = _from_env(self.env[var], hints[name], key, var)
                elif name in data:
                    changes[name] = _from_value(data[name], hints[name], key)
                else:
                    continue
                touched = True
        try:
            return dataclasses.replace(current, **changes), touched
        except ValueError as exc:  # from a __post_init__ check
            raise ConfigError(prefix or cls.__name__, str(exc)) from exc

    def _passthrough(self, tp: Any, key: str, var: str, default: Any, file: Any, over: Any) -> Any:
        value_type = (get_args(tp) or (str, str))[1]
        env_prefix = var + "__"
        from_env = {
            name[len(env_prefix) :].lower().replace("_", "."): text
            for name, text in self.env.items()
            if name.startswith(env_prefix) and len(name) > len(env_prefix)
        }
        if file is None and over is None and not from_env:
            return None
        merged = _Passthrough(default or {})
        for source in (file, from_env, over):
            if source is None:
                continue
            if not isinstance(source, Mapping):
                raise ConfigError(key, f"expected a table, got {type(source).__name__}")
            for sub, val in _flatten(source).items():
                merged[sub] = _passthrough_value(val, value_type, f"{key}.{sub}")
        return merged


class _Passthrough(dict[str, Any]):
    """A plain dict (librdkafka takes it as is) whose repr masks secret-looking keys, so that logging
    a whole config object cannot leak ``sasl.password``."""

    def __repr__(self) -> str:
        return repr({k: MASK if looks_secret(k) else v for k, v in self.items()})


def _passthrough_value(value: Any, value_type: Any, key: str) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ConfigError(key, f"expected a scalar, got {type(value).__name__}")
    if value_type is str and not isinstance(value, str):
        # librdkafka reads every property as a string; TOML true must become "true", not "True"
        return str(value).lower() if isinstance(value, bool) else str(value)
    return value


def _validate(obj: Any, prefix: str) -> None:
    """Run ``validate()`` hooks, sections first, on the final tree only: an optional section that stays
    ``None`` is never validated."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _validate(value, _join(prefix, f.name))
    hook = getattr(obj, "validate", None)
    if not callable(hook):
        return
    try:
        hook()
    except ConfigError as exc:
        raise ConfigError(_join(prefix, exc.key), exc.message) from exc
    except ValueError as exc:
        raise ConfigError(prefix or type(obj).__name__, str(exc)) from exc


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


# What a TOML/overrides value may be for each scalar field type (bool is excluded from int and float).
_ACCEPTS: dict[Any, Any] = {bool: bool, int: int, float: (int, float), str: str, Secret: (str, Secret)}


def _from_value(value: Any, tp: Any, key: str) -> Any:
    """Check a typed value from TOML or ``overrides`` against the field type ``tp``."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(key, "must be set")
    origin = get_origin(base)
    if origin is Literal:
        # type() as well as ==, or TOML `true` would pass for Literal[0, 1]
        choices = get_args(base)
        if any(type(value) is type(c) and value == c for c in choices):
            return value
        raise ConfigError(key, f"must be one of {', '.join(map(repr, choices))}, not {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        item = (get_args(base) or (str,))[0]
        return origin(_from_value(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    accepts = _ACCEPTS.get(base)
    if accepts is None and isinstance(base, type) and issubclass(base, PurePath):
        accepts = (str, PurePath)
    if accepts is None:
        raise TypeError(f"{key}: unsupported field type {tp!r}")
    if not isinstance(value, accepts) or (isinstance(value, bool) and base is not bool):
        # never echo what was given for a secret: it may be the password with a typo
        shown = "" if base is Secret else f" {value!r}"
        raise ConfigError(key, f"expected {_type_name(base)}, got {type(value).__name__}{shown}")
    return value if isinstance(value, base) else base(value)  # int -> float, str -> Secret or Path


def _from_env(text: str, tp: Any, key: str, var: str) -> Any:
    """Parse the string ``text`` of environment variable ``var`` into the field type ``tp``."""
    base, optional = _unwrap_optional(tp)
    if optional and text == "":
        return None
    origin = get_origin(base)
    if origin in (list, tuple):
        item = (get_args(base) or (str,))[0]
        return origin(_from_env(part.strip(), item, key, var) for part in text.split(",") if part.strip())
    if origin is Literal:
        for choice in get_args(base):
            if (str(choice).lower() if isinstance(choice, bool) else str(choice)) == text:
                return choice
        choices = ", ".join(map(str, get_args(base)))
        raise ConfigError(key, f"{var}={text!r}: must be one of {choices}")
    if base is bool:
        if text.strip().lower() in _TRUE | _FALSE:
            return text.strip().lower() in _TRUE
        raise ConfigError(key, f"{var}={text!r}: expected a boolean (true/false, 1/0, yes/no, on/off)")
    if base is int or base is float:
        try:
            return base(text.strip())
        except ValueError:
            kind = "an integer" if base is int else "a number"
            raise ConfigError(key, f"{var}={text!r}: expected {kind}") from None
    if base is Secret:
        return Secret(text)
    return _from_value(text, base, key)


# -- command line --------------------------------------------------------------------------------------


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PATH`` and ``--print-config`` to a component's parser."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"TOML configuration file (default: ${CONFIG_ENV}; without either, defaults and "
        f"{ENV_PREFIX}* environment variables only)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML, secrets masked, and exit",
    )


def config_from_args(cls: type[T], args: argparse.Namespace, *, env: Mapping[str, str] | None = None,
                     sections: Collection[str] | None = None) -> T:
    """Load ``cls`` from ``args.config`` (or ``$EDGEBRIDGE_CONFIG``) and the environment."""
    env = os.environ if env is None else env
    path = getattr(args, "config", None) or env.get(CONFIG_ENV) or None
    return load_config(cls, path, env=env, sections=sections)


def config_or_exit_code(
    cls: type[T], args: argparse.Namespace, prog: str, *, env: Mapping[str, str] | None = None,
    sections: Collection[str] | None = None,
) -> T | int:
    """What every component's ``main()`` does first: the loaded configuration, or an exit code.

    A bad configuration prints a one-line error naming the key and gives 2; ``--print-config`` prints
    the effective configuration (secrets masked) and gives 0. The caller returns an ``int`` as is.
    """
    with renames.holding() as held:  # logged by the service shell once logging is set up
        try:
            config = config_from_args(cls, args, env=env, sections=sections)
        except ConfigError as exc:
            config = None
            error = exc
    if config is None or getattr(args, "print_config", False):
        for record in held:  # no logging will be set up: as they are, before the outcome
            print(record.getMessage(), file=sys.stderr)
        held.clear()
    if config is None:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    if getattr(args, "print_config", False):
        print(dump_config(config), end="")
        return 0
    return config
