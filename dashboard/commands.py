"""Each device's last commands and their replies, from ``iot.commands`` and ``iot.commands.responses``.

A command record is what ``edgebridge command`` (or any producer) writes for the bridge's downlink: key
the device id, value ``{"id", "command", "args", "expires"}``. A reply is what the bridge's uplink
carries up verbatim: key the device id, value ``{"id", "ok", "result"}`` or ``{"id", "ok": false,
"error"}``, and the MQTT 5 correlation data as the ``correlation_data`` header (the command's id). A
reply is joined to its command by that id (the header, else the body's ``id``); a reply whose command
is not held (older than the last ``keep``) is listed alone.

Every record is read totally: bytes that are not a JSON object are listed as such, with the reason,
never an error. The pipeline feed's thread adds; the page's worker threads read a copy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import orjson

__all__ = ["Command", "CommandLog"]

KEEP = 20  # per device


@dataclass(frozen=True)
class Command:
    id: str
    name: str  # the command, or "(reply only)" / "(not JSON)"
    args: str  # as JSON text
    sent_at: float | None  # the record's Kafka timestamp, Unix seconds
    expires: str
    answered_at: float | None = None
    ok: bool | None = None  # None: no reply yet
    answer: str = ""  # the result as JSON text, or the error


def _object(raw: bytes | None) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _text(value: Any, limit: int = 300) -> str:
    if isinstance(value, str):
        return value[:limit]
    try:
        return orjson.dumps(value).decode()[:limit]
    except (TypeError, orjson.JSONEncodeError):  # nested past orjson's depth limit, an int past 64 bits
        return repr(value)[:limit]


class CommandLog:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._by_device: dict[str, OrderedDict[str, Command]] = {}
        self._lock = threading.Lock()

    def command(self, device: str, value: bytes | None, at: float | None, offset: int) -> None:
        body = _object(value)
        if body is None:
            self._put(device, Command(f"command-at-{offset}", "(not JSON)", "", at, ""))
            return
        cid = str(body.get("id") or f"command-at-{offset}")
        self._put(device, Command(cid, _text(body.get("command", "?"), 80), _text(body.get("args", {})), at,
                                  _text(body.get("expires", ""), 40)))

    def reply(self, device: str, value: bytes | None, correlation: bytes | None, at: float | None,
              offset: int) -> None:
        body = _object(value)
        cid = (correlation.decode("utf-8", "replace") if correlation else
               str(body.get("id")) if body and body.get("id") else f"reply-at-{offset}")
        if body is None:
            ok, answer = False, "the reply is not a JSON object"
        else:
            ok = body.get("ok") is True
            answer = _text(body.get("result") if ok else body.get("error", ""))
        with self._lock:
            held = self._by_device.get(device, OrderedDict()).get(cid)
        base = held or Command(cid, "(reply only)", "", None, "")
        self._put(device, replace(base, answered_at=at, ok=ok, answer=answer))

    def _put(self, device: str, command: Command) -> None:
        with self._lock:
            held = self._by_device.setdefault(device, OrderedDict())
            held[command.id] = command  # a reply keeps its command's place
            while len(held) > self.keep:
                held.popitem(last=False)

    def of(self, device: str) -> list[Command]:
        """The device's commands, newest first."""
        with self._lock:
            return list(reversed(self._by_device.get(device, OrderedDict()).values()))
