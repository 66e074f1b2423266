"""One way to run a component as a service: logging, stop signals, metrics and health, exit status.

A component's ``cli.py`` keeps only what is its own: its arguments, its configuration class, and a
``build`` function that constructs it and says how to run it::

    config = config_or_exit_code(EnricherConfig, args, prog)
    if isinstance(config, int):
        return config
    return service.run(config, build, name="enricher", log=log)

    def build(config: EnricherConfig) -> Service:
        from enricher.processor import Processor  # the heavy modules: only when running

        processor = Processor(config)
        return Service(processor.run, health=processor.progress.health,
                       registry=lambda: processor.metrics.registry)

:func:`run` then, in this order:

1. sets up logging per ``[log]`` (:func:`edgebridge.logs.setup_logging`);
2. makes SIGTERM and SIGINT set the stop event (:func:`edgebridge.lifecycle.install_stop_handlers`),
   and call :attr:`Service.stop` once the component is built;
3. calls ``build(config)``; a signal during the build is kept, the run then returns at once;
4. with ``[metrics] enabled``, serves ``/metrics`` (the registry) and ``/healthz`` (the health check)
   with :class:`edgebridge.metrics.MetricsServer`; prometheus_client and ``http.server`` are imported
   only then, so a device with metrics off never loads them;
5. calls ``service.run(stop)``, which returns once ``stop`` is set and the component has shut down;
6. stops the metrics server and restores the signal handlers, whatever happened.

Exit status, the same for every component (and what a supervisor acts on):

- **0**: a clean stop (``run`` returned; a ``ShutdownRequested`` out of a wait after a stop signal too).
- **1**: a fatal error, for the supervisor to restart the process: an exception out of ``build`` or
  ``run``, logged as ``"<name> failed"`` with its traceback, or in one line with the message
  :attr:`Service.fatal` gives for an expected one (a fenced producer); a metrics port that cannot be
  bound.
- **2**: a configuration error: a ``ConfigError`` out of ``build`` or ``run`` (a topic that does not
  exist), logged as ``"configuration error"``. ``build`` may also return an exit status itself after
  printing why it cannot start (a database that cannot be opened); configuration files and arguments
  are judged before :func:`run`, by :func:`edgebridge.config.config_or_exit_code` and argparse.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from edgebridge.errors import ConfigError, ShutdownRequested
from edgebridge.lifecycle import install_stop_handlers
from edgebridge.logs import setup_logging
from edgebridge.settings import LogSettings, MetricsConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from edgebridge.metrics import HealthCheck, MetricsServer

__all__ = ["EXIT_CONFIG", "EXIT_FATAL", "EXIT_OK", "Service", "ServiceConfig", "run", "serve_metrics"]

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_CONFIG = 2


class ServiceConfig(Protocol):
    """What the shell reads of a component's configuration: ``[log]`` and ``[metrics]``."""

    @property
    def log(self) -> LogSettings: ...

    @property
    def metrics(self) -> MetricsConfig: ...


C = TypeVar("C", bound=ServiceConfig)


@dataclass(frozen=True)
class Service:
    """A built component, as :func:`run` runs it.

    ``run(stop)`` runs until ``stop`` is set, then shuts down and returns (an ``int`` it returns is
    the exit status, ``None`` is 0). ``health`` answers ``/healthz``: it must turn unhealthy when the
    component stops doing its job (a loop that no longer turns: :class:`edgebridge.metrics.LoopProgress`),
    never be a constant. ``registry`` gives what ``/metrics`` serves; it is called only when metrics
    are enabled, so it is the place to import prometheus_client. ``stop`` is for a component that
    waits on something of its own besides the event: it is called, from the signal handler, after the
    event is set (it must only set flags or wake a loop). ``fatal`` maps an exception type ``run`` may
    raise on purpose to the one line logged for it, without a traceback.
    """

    run: Callable[[threading.Event], int | None]
    health: HealthCheck
    registry: Callable[[], CollectorRegistry]
    stop: Callable[[], None] | None = None
    fatal: Mapping[type[Exception], str] = field(default_factory=dict)


def run(config: C, build: Callable[[C], Service | int], *, name: str, log: logging.Logger) -> int:
    """Run the component ``build(config)`` makes until SIGTERM/SIGINT; return its exit status (see the
    module docstring). ``name`` says what failed in the log (``"bridge failed"``); ``log`` is the
    component's logger. Must be called from the main thread (signal handlers)."""
    setup_logging(config.log.level, config.log.format)
    stop = _Stop()
    restore = install_stop_handlers(stop.request)
    server: MetricsServer | None = None
    service: Service | None = None
    try:
        built = build(config)
        if isinstance(built, int):
            return built
        service = built
        stop.attach(service.stop)
        try:
            server = serve_metrics(config.metrics, service.registry, service.health)
        except OSError as exc:
            m = config.metrics
            log.error("cannot serve metrics", extra={"host": m.host, "port": m.port, "error": str(exc)})
            return EXIT_FATAL
        status = service.run(stop.event)
        return EXIT_OK if status is None else status
    except ConfigError as exc:
        log.error("configuration error", extra={"error": str(exc)})
        return EXIT_CONFIG
    except ShutdownRequested:
        if stop.event.is_set():
            return EXIT_OK
        log.exception(f"{name} failed")
        return EXIT_FATAL
    except Exception as exc:
        message = _fatal_message(service, exc)
        if message is None:
            log.exception(f"{name} failed")
        else:
            log.error(message, extra={"error": str(exc)})
        return EXIT_FATAL
    finally:
        if server is not None:
            server.stop()
        restore()


def serve_metrics(
    metrics: MetricsConfig, registry: Callable[[], CollectorRegistry], health: HealthCheck
) -> MetricsServer | None:
    """``/metrics`` and ``/healthz`` on ``metrics.host:metrics.port``, started; ``None`` when
    ``metrics.enabled`` is false, and then nothing of prometheus_client or ``http.server`` is imported.
    Raises ``OSError`` when the port cannot be bound."""
    if not metrics.enabled:
        return None
    from edgebridge.metrics import MetricsServer

    return MetricsServer(metrics.host, metrics.port, registry(), health=health).start()


def _fatal_message(service: Service | None, exc: Exception) -> str | None:
    if service is None:
        return None
    for kind, message in service.fatal.items():
        if isinstance(exc, kind):
            return message
    return None


class _Stop:
    """The stop event and, once the component is built, its own ``stop``: a signal before that is not
    lost, :meth:`attach` passes it on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._also: Callable[[], None] | None = None

    def request(self) -> None:
        # runs in the signal handler: set flags only, log nothing
        self.event.set()
        if self._also is not None:
            self._also()

    def attach(self, also: Callable[[], None] | None) -> None:
        self._also = also
        if also is not None and self.event.is_set():
            also()
