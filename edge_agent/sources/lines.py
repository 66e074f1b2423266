"""Line protocols of serial sensors: JSON lines, ``key=value`` pairs, CSV with a header.

Each parser turns one text line into reading data ``{name: {"v": value, "u": unit}}`` or raises
``ValueError`` (the caller counts the line as bad and skips it):

- ``json``: ``{"temperature": 21.5, "door": false}`` or ``{"temperature": {"v": 21.5, "u": "Cel"}}``;
- ``kv``: ``temperature=21.5 humidity=40`` (spaces, commas or semicolons between pairs), units from
  the ``[serial.units]`` map;
- ``csv``: the first line is the header; ``[serial.csv_columns]`` maps a column to ``name:unit``;
  columns not listed are ignored.
"""

from __future__ import annotations

import csv
import math
import re
from typing import Any

import orjson

__all__ = ["LineParser"]

_PAIR_SPLIT = re.compile(r"[\s,;]+")


def _number_or_text(text: str) -> float | int | str | bool:
    low = text.strip()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(low)
    except ValueError:
        pass
    try:
        value = float(low)
    except ValueError:
        if not low:
            raise ValueError("empty value") from None
        return low
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _measure(value: Any, unit: str | None) -> dict[str, Any]:
    return {"v": value, "u": unit} if unit else {"v": value}


class LineParser:
    def __init__(self, protocol: str, units: dict[str, str], csv_columns: dict[str, str]) -> None:
        self.protocol = protocol
        self.units = units
        self.columns = {
            col: tuple(spec.split(":", 1)) if ":" in spec else (spec, "") for col, spec in csv_columns.items()
        }
        self._header: list[str] | None = None

    def reset(self) -> None:
        """A reopened port starts again with a header (CSV)."""
        self._header = None

    def parse(self, line: str) -> dict[str, Any] | None:
        """Reading data, or ``None`` for a line that carries none (a CSV header, a blank line)."""
        line = line.strip()
        if not line:
            return None
        if self.protocol == "json":
            return self._json(line)
        if self.protocol == "kv":
            return self._kv(line)
        return self._csv(line)

    def _json(self, line: str) -> dict[str, Any]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(obj, dict) or not obj:
            raise ValueError("not a non-empty JSON object")
        data = {}
        for name, value in obj.items():
            if isinstance(value, dict):
                data[name] = value
            else:
                data[name] = _measure(value, self.units.get(name))
        return data

    def _kv(self, line: str) -> dict[str, Any]:
        data = {}
        for pair in filter(None, _PAIR_SPLIT.split(line)):
            name, sep, text = pair.partition("=")
            if not sep or not name:
                raise ValueError(f"not key=value: {pair!r}")
            data[name] = _measure(_number_or_text(text), self.units.get(name))
        if not data:
            raise ValueError("no pairs")
        return data

    def _csv(self, line: str) -> dict[str, Any] | None:
        cells = next(csv.reader([line]))
        if self._header is None:
            self._header = [c.strip() for c in cells]
            return None
        if len(cells) != len(self._header):
            raise ValueError(f"{len(cells)} cells, the header has {len(self._header)}")
        data = {}
        for col, text in zip(self._header, cells, strict=True):
            if col in self.columns:
                name, unit = self.columns[col]
                data[name] = _measure(_number_or_text(text), unit or None)
        if not data:
            raise ValueError("no mapped column")
        return data
