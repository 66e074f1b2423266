"""Commands on ``{prefix}/{device}/commands``: ``ping``, ``status``, ``set-interval``, ``flush``.

Request: a JSON object ``{"id": "c-1", "command": "set-interval", "args": {"seconds": 5}}``. The reply
goes to the MQTT 5 response topic of the request (default ``{prefix}/{device}/commands/response``) with
the request's correlation data: ``{"id", "ok": true, "result": {...}}`` or ``{"id", "ok": false,
"error": "..."}``. A malformed or unknown command gets an error reply, never an exception. A repeated
``id`` (QoS 1 may deliver twice) is not executed again: the first reply is sent again, from a bounded
memory of the last 256 ids (overflow policy: forget the oldest).

A request may carry ``"expires"``, an RFC 3339 time (``edgebridge command`` sets it): a command received
after it is not run, its reply is ``{"ok": false, "error": "expired ..."}``. The broker already drops an
expired command from the session of an offline device (the bridge sets the MQTT 5 Message Expiry
Interval); this check is for what it cannot see: a broker without expiry, or a command that arrived
just before the device went down and is handed over as it comes back. It trusts the device clock.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from edgebridge.envelope import parse_time
from edgebridge.errors import EnvelopeError

__all__ = ["CommandHandler", "Reply"]

log = logging.getLogger(__name__)

Action = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Reply:
    topic: str
    payload: bytes
    correlation: bytes | None


class CommandHandler:
    def __init__(self, default_response_topic: str, actions: dict[str, Action], remember: int = 256,
                 clock: Callable[[], float] = time.time) -> None:
        self.default_response_topic = default_response_topic
        self._clock = clock
        self.actions = actions
        self._seen: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._remember = remember
        self.executed = 0
        self.duplicates = 0
        self.errors = 0
        self.expired = 0

    def handle(self, payload: bytes, response_topic: str | None, correlation: bytes | None) -> Reply:
        topic = response_topic or self.default_response_topic
        try:
            request = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return self._error(topic, correlation, None, "malformed: not JSON")
        if not isinstance(request, dict):
            return self._error(topic, correlation, None, "malformed: not a JSON object")
        cid = request.get("id")
        if not isinstance(cid, str) or not cid:
            return self._error(topic, correlation, None, "malformed: missing id")
        if cid in self._seen:
            self.duplicates += 1
            return Reply(topic, self._seen[cid], correlation)
        name = request.get("command")
        args = request.get("args") or {}
        action = self.actions.get(name) if isinstance(name, str) else None
        stale = self._stale(request.get("expires"))
        if stale is not None:
            body = self._body(cid, None, stale)
        elif action is None:
            body = self._body(cid, None, f"unknown command {name!r}")
        elif not isinstance(args, dict):
            body = self._body(cid, None, "malformed: args must be an object")
        else:
            try:
                body = self._body(cid, action(args), None)
                self.executed += 1
            except (ValueError, TypeError, KeyError) as exc:
                body = self._body(cid, None, f"{name}: {exc}")
        self._seen[cid] = body
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return Reply(topic, body, correlation)

    def _stale(self, expires: Any) -> str | None:
        """Why a request is not run for its ``expires``, or ``None`` (none, or not passed yet)."""
        if expires is None:
            return None
        try:
            deadline = parse_time(expires).timestamp()
        except EnvelopeError:
            return f"malformed: expires {str(expires)[:60]!r} is not an RFC 3339 time"
        now = self._clock()
        if now <= deadline:
            return None
        self.expired += 1
        return f"expired at {expires}, {now - deadline:.1f} s ago: not run"

    def _error(self, topic: str, correlation: bytes | None, cid: str | None, error: str) -> Reply:
        return Reply(topic, self._body(cid, None, error), correlation)

    def _body(self, cid: str | None, result: dict[str, Any] | None, error: str | None) -> bytes:
        if error is not None:
            self.errors += 1
            log.warning("command refused", extra={"id": cid, "error": error})
            return orjson.dumps({"id": cid, "ok": False, "error": error})
        return orjson.dumps({"id": cid, "ok": True, "result": result})
