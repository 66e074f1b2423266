"""`--print-config`: a loaded configuration rendered back as TOML, every secret masked."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from edgebridge.secret import MASK, Secret, looks_secret

__all__ = ["dump_config"]

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def dump_config(obj: Any) -> str:
    """The effective configuration as TOML text, secrets masked; ``None`` settings as comments."""
    out: list[str] = []
    _dump_table(obj, (), out)
    return "\n".join(out).lstrip("\n") + "\n"


def _dump_table(obj: Any, path: tuple[str, ...], out: list[str]) -> None:
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) or isinstance(value, Mapping):
            tables.append((f.name, value))
        elif value is None:
            lines.append(f"# {_toml_key(f.name)} is not set")
        else:
            secret = isinstance(value, str) and looks_secret(f.name)
            lines.append(f"{_toml_key(f.name)} = {_toml_value(Secret(value) if secret else value)}")
    if path and (lines or not tables):
        out.extend(["", f"[{'.'.join(map(_toml_key, path))}]"])
    out.extend(lines)
    for name, value in tables:
        if isinstance(value, Mapping):
            out.extend(["", f"[{'.'.join(map(_toml_key, (*path, name)))}]"])
            for key, val in value.items():
                out.append(f"{_toml_key(key)} = {_toml_value(MASK if looks_secret(key) else val)}")
        else:
            _dump_table(value, (*path, name), out)


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else _toml_str(key)


def _toml_str(text: str) -> str:
    def escape(c: str) -> str:
        return _TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f" else c)

    return '"' + "".join(map(escape, text)) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_str(str(value))  # str, Path, and Secret (whose str() is the mask)
