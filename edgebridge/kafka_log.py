"""librdkafka's own log lines, through the project's logger: one format, rate-limited, never a flood.

Left alone, librdkafka writes to stderr in its own format, and with a broker away a consumer in a group
retries its bootstrap connection about every 50 ms, each attempt one line: 10-25 MB of log per client
over a half-hour outage. :func:`kafka_logging` gives every client (see
:meth:`edgebridge.settings.KafkaSettings.client_config`):

- ``logger``: :class:`KafkaLog`, which confluent-kafka calls as ``logger.log(level, fmt, *args)``; it
  emits through the ``librdkafka`` logger in the project's format, at most one line per (client,
  facility, level) every 30 seconds, the number left out reported as ``suppressed=N`` on the next;
- ``reconnect.backoff.ms``/``reconnect.backoff.max.ms`` of 500 ms / 10 s: attempts back off to
  seconds instead of librdkafka's 100 ms start.

confluent-kafka hands the log lines over only inside ``poll``/``consume``/``flush``: a client given a
logger must be served regularly, or the lines queue up in its memory. Every long-lived client in
edgebridge is (bridge producer and downlink consumer, enricher consumer, producer and registry reader).
"""

from __future__ import annotations

import logging
from typing import Any

from edgebridge.logs import rate_limited

__all__ = ["KafkaLog", "kafka_logging"]

_log = logging.getLogger("librdkafka")
_INTERVAL = 30.0  # seconds between two lines of one (client, facility, level)


class KafkaLog:
    """The ``logger`` of a librdkafka client (duck-typed: confluent-kafka only calls ``log``)."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        # confluent-kafka calls log(level, "%s [%s] %s", facility, client name, text)
        if len(args) == 3:
            facility, client, text = (str(a) for a in args)
        else:
            facility, client, text = "", "", msg % args if args else msg
        rate_limited(_log, (client, facility, level), _INTERVAL).log(
            level, "kafka client log", extra={"client": client, "facility": facility, "text": text})

    def isEnabledFor(self, level: int) -> bool:
        return _log.isEnabledFor(level)


_KAFKA_LOG = KafkaLog()


def kafka_logging() -> dict[str, Any]:
    """The librdkafka settings every edgebridge client gets (the operator's passthrough may override)."""
    return {"logger": _KAFKA_LOG, "reconnect.backoff.ms": 500, "reconnect.backoff.max.ms": 10_000}
