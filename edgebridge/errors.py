"""The one error root of edgebridge.

Every error edgebridge raises on purpose derives from :class:`EdgeBridgeError`; library errors
(paho return codes, librdkafka ``KafkaError``, ``sqlite3`` errors) are translated once, in the adapter
that calls the library, with ``raise ... from exc``::

    EdgeBridgeError
    ├── ConfigError            a bad configuration value; ``.key`` names it (``mqtt.url``)
    ├── EnvelopeError          a message that is not a valid event; ``.reason`` is machine-readable
    ├── ToolMissingError       a program we run (mosquitto, java, mvn) is not installed; ``.package``
    ├── BrokerStartError       a local dev broker did not come up; ``.broker``, ``.log_path``
    ├── BrokerFaultError       a fault injected into a local dev broker (signal, pause, resume, kill)
    │                          did not demonstrably happen; ``.broker``, ``.pid``
    └── ShutdownRequested      raised out of an interruptible wait when the process is stopping

Keep the tree shallow: components add a leaf here only when callers need to catch it separately.
"""

from __future__ import annotations

__all__ = [
    "BrokerFaultError",
    "BrokerStartError",
    "ConfigError",
    "EdgeBridgeError",
    "EnvelopeError",
    "ShutdownRequested",
    "ToolMissingError",
]


class EdgeBridgeError(Exception):
    """Root of every error edgebridge raises deliberately."""


class ConfigError(EdgeBridgeError):
    """A configuration value is missing, unknown or of the wrong type.

    ``key`` is the dotted path of the offending setting (``"outbox.max_bytes"``), so the message an
    operator reads always says which line of the TOML file or which environment variable to fix.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class EnvelopeError(EdgeBridgeError):
    """A payload is not a valid edgebridge event or batch.

    ``reason`` is a short machine-readable code (see ``edgebridge.envelope.REASONS``), used as the
    dead-letter reason header and as a metric label; ``detail`` is for humans. ``index`` is the
    position of the offending event inside a batch, or ``None``.
    """

    def __init__(self, reason: str, detail: str = "", index: int | None = None) -> None:
        where = f" (batch item {index})" if index is not None else ""
        super().__init__(f"{reason}: {detail}{where}" if detail else f"{reason}{where}")
        self.reason = reason
        self.detail = detail
        self.index = index


class ToolMissingError(EdgeBridgeError):
    """A program edgebridge needs to run is not installed; ``package`` says what to install."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"{tool} not found: install the '{package}' package (e.g. apt-get install {package})"
        )
        self.tool = tool
        self.package = package


class BrokerStartError(EdgeBridgeError):
    """A local development broker did not become ready; its log is at ``log_path``."""

    def __init__(self, broker: str, message: str, log_path: str | None = None) -> None:
        tail = f" (log: {log_path})" if log_path else ""
        super().__init__(f"{broker}: {message}{tail}")
        self.broker = broker
        self.log_path = log_path


class BrokerFaultError(EdgeBridgeError):
    """A fault asked of a local dev broker did not demonstrably happen.

    Raised when the process to signal is not running or is not ours (``pid`` is then the stale pid, or
    None), or when the process did not reach the state the fault promises (every thread stopped after
    ``pause``, none stopped after ``resume``, gone after ``kill``). A fault test that gets this error
    must fail: it would otherwise assert on a broker that was never frozen or killed.
    """

    def __init__(self, broker: str, message: str, pid: int | None = None) -> None:
        super().__init__(f"{broker} (pid {pid}): {message}")
        self.broker = broker
        self.pid = pid


class ShutdownRequested(EdgeBridgeError):
    """Raised out of an interruptible wait (a retry sleep, a reconnect backoff) on shutdown."""
