"""Logging: one event per line on stderr, as logfmt or JSON, secrets never in clear.

Call :func:`setup_logging` once in ``main()``; everywhere else use ``logging.getLogger(__name__)`` and put
data in ``extra`` rather than in the message, so it stays machine-readable::

    log.warning("bad sensor line", extra={"port": "/dev/ttyUSB0", "line": raw})
    # ts=2024-05-01T12:00:00.123Z level=warning logger=edge_agent.sources msg="bad sensor line"
    #   port=/dev/ttyUSB0 line="T=??"

Contract:

- Every record is exactly one line: newlines (also inside tracebacks, rendered as ``exc=``) are escaped.
- Fields: ``ts`` (UTC, RFC 3339, milliseconds), ``level``, ``logger``, ``msg``, then the ``extra`` fields
  in the order given, then ``exc``/``stack``.
- A :class:`~edgebridge.config.Secret` renders as ``***``; so does any ``extra`` value, or value of a
  mapping passed in ``extra`` or as a ``%s`` argument, whose key looks secret (``password``, ``token``...).
- :func:`rate_limited` emits at most one record per key per interval and reports how many were
  dropped as ``suppressed=N`` on the next record that gets through.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import IO, Any, Literal

from edgebridge._stamps import rfc3339
from edgebridge.config import MASK, looks_secret

__all__ = [
    "JsonFormatter",
    "LogfmtFormatter",
    "rate_limited",
    "setup_logging",
]

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_PLAIN = re.compile(r'[^ ="\\]+')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _redact(key: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _redact(str(k), v) for k, v in value.items()}
    if value is not None and looks_secret(key):
        return MASK
    return value


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()``, with secret-looking keys of mapping arguments masked."""
    args = record.args
    if not args:
        return str(record.msg)
    if isinstance(args, Mapping):
        return str(record.msg) % _redact("", args)
    return str(record.msg) % tuple(_redact("", a) for a in args)


class _EventFormatter(logging.Formatter):
    def event(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record as an ordered dict of fields, secrets masked."""
        event: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                # an extra called "ts" or "level" must not overwrite ours
                event[f"extra.{key}" if key in event else key] = _redact(key, value)
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            event["exc"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return event


class LogfmtFormatter(_EventFormatter):
    """``key=value`` pairs; values quoted when needed, with ``\\n``, ``\\"`` and ``\\\\`` escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in self.event(record).items())


class JsonFormatter(_EventFormatter):
    """One JSON object per line (ASCII-only, so no Unicode line separator can split it)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.event(record), default=str)


def _logfmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # default=str so a Secret nested in a structure still shows as ***
    text = json.dumps(value, default=str) if isinstance(value, Mapping | list | tuple) else str(value)
    if text.isprintable() and _PLAIN.fullmatch(text):
        return text
    return '"' + "".join(map(_escape, text)) + '"'


def _escape(c: str) -> str:
    return _ESCAPES.get(c) or (c if c.isprintable() else f"\\u{ord(c):04x}")


_FORMATTERS: dict[str, Callable[[], logging.Formatter]] = {"logfmt": LogfmtFormatter, "json": JsonFormatter}


class _Handler(logging.StreamHandler[IO[str]]):
    """Marks the handler setup_logging installed, so a second call replaces it instead of doubling lines."""


def setup_logging(
    level: str | int = "INFO",
    fmt: Literal["logfmt", "json"] = "logfmt",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every record of the root logger to ``stream`` (default: ``sys.stderr`` at call time).

    Idempotent: calling it again replaces the handler it installed before, other handlers stay.
    Raises ``ValueError`` for an unknown level or format.
    """
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in _FORMATTERS:
        raise ValueError(f"unknown log format {fmt!r}: expected logfmt or json")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_FORMATTERS[fmt]())
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


# -- rate limiting -------------------------------------------------------------------------------------


class _Limiter:
    """Per-key admission: one per ``interval``; counts the rest. Remembers at most ``max_keys`` keys
    (the least recently admitted is forgotten, with its pending count), so memory stays bounded however
    many distinct keys a faulty input produces."""

    def __init__(self, clock: Callable[[], float], max_keys: int) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._state: OrderedDict[Hashable, list[float]] = OrderedDict()  # key -> [last_admitted, suppressed]
        # Several source threads may log through one limiter; the critical section is a few dict ops.
        self._lock = threading.Lock()

    def admit(self, key: Hashable, interval: float) -> int | None:
        """Number suppressed since the last admitted record if this one may go out, else ``None``."""
        now = self._clock()
        with self._lock:
            state = self._state.get(key)
            if state is not None and now - state[0] < interval:
                state[1] += 1
                return None
            self._state[key] = [now, 0]
            self._state.move_to_end(key)
            while len(self._state) > self._max_keys:
                self._state.popitem(last=False)
            return int(state[1]) if state is not None else 0


class _RateLimited(logging.LoggerAdapter[logging.Logger]):
    """The logger :func:`rate_limited` returns: a record at an enabled level goes out if the limiter
    admits its key, with ``suppressed=N`` when N were held back since the last one."""

    def __init__(self, logger: logging.Logger, key: Hashable, interval: float, limiter: _Limiter) -> None:
        super().__init__(logger, {})
        self._key, self._interval, self._limiter = key, interval, limiter

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return  # a disabled level is not counted, and does not use up the interval
        suppressed = self._limiter.admit(self._key, self._interval)
        if suppressed is None:
            return
        if suppressed:
            kwargs["extra"] = {**(kwargs.get("extra") or {}), "suppressed": suppressed}
        kwargs.setdefault("stacklevel", 2)  # funcName/lineno of our caller, not of this method
        self.logger.log(level, msg, *args, **kwargs)


_shared_limiter = _Limiter(time.monotonic, max_keys=4096)


def rate_limited(
    logger: logging.Logger, key: Hashable, interval: float = 60.0
) -> logging.LoggerAdapter[logging.Logger]:
    """A logger for one record about ``key``: it goes out unless one about the same ``key`` (of the same
    logger) went out less than ``interval`` seconds ago; the next one out carries ``suppressed=N``.

    The key is the caller's notion of "same problem" (``"bad-line"``, or ``("bad-line", port)``);
    one process-wide limiter remembers the last 4096 keys::

        rate_limited(log, "bad-line", 10.0).warning("bad sensor line", extra={"line": raw})
    """
    return _RateLimited(logger, (logger.name, key), interval, _shared_limiter)
