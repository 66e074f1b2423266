"""Prometheus metrics and the health check, served over HTTP by every component.

Each component creates its metrics on its own registry, never on prometheus_client's global one, so a
test can run several agents or bridges in one process::

    registry = new_registry()
    published = Counter("edgebridge_agent_published_total", "Events PUBACKed", registry=registry)
    with MetricsServer("0.0.0.0", config.metrics.port, registry, health=agent.health):
        agent.run()

Contract:

- ``GET /metrics``: the registry in Prometheus text format (OpenMetrics when the scraper asks for it).
- ``GET /healthz``: ``health()`` returns ``(ok, detail)``; the reply is JSON
  ``{"status": "ok" | "unhealthy", "detail": ...}`` with status 200 when ``ok``, else 503. A ``health``
  that raises counts as unhealthy. Without ``health`` the process is healthy while it serves.
- Anything else is 404. Requests are served by a daemon thread per connection; the server's own loop
  runs in a daemon thread between :meth:`MetricsServer.start` and :meth:`MetricsServer.stop`.
- Port 0 binds a free port; :attr:`MetricsServer.port` tells which.

A service whose core is one loop (the enricher, the sinks) passes :meth:`LoopProgress.health` and calls
:meth:`LoopProgress.turn` once per turn of its loop: ``/healthz`` then answers 503 until the first turn
and whenever the loop has been inside one turn for longer than ``stall_after`` (a step that does not
return, a lock it waits on, a call hung in a client library), and 200 again at the next turn.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from edgebridge.settings import MetricsConfig  # re-exported: the config of the server defined here

__all__ = ["HealthCheck", "LoopProgress", "MetricsConfig", "MetricsServer", "new_registry"]

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, Mapping[str, Any] | str | None]]


def new_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, with the process, platform and GC collectors unless ``process_metrics=False``
    (the global registry has them; a component's own registry should not lose them)."""
    registry = CollectorRegistry()
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class LoopProgress:
    """The health of a loop that must keep turning: healthy once it has turned, and while its last turn
    began at most ``stall_after`` seconds ago.

    :meth:`turn` is one float store, cheap enough for any loop; :meth:`health` runs on the HTTP server's
    thread and only reads that float. ``clock`` is injectable so tests never sleep.
    """

    def __init__(self, stall_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not stall_after > 0:
            raise ValueError(f"stall_after must be > 0, not {stall_after!r}")
        self.stall_after = stall_after
        self._clock = clock
        self._last: float | None = None

    def turn(self) -> None:
        """The loop is starting a turn: it has made progress."""
        self._last = self._clock()

    def health(self) -> tuple[bool, dict[str, Any]]:
        last = self._last
        if last is None:
            return False, {"loop": "starting", "stall_after_s": self.stall_after}
        age = self._clock() - last
        ok = age <= self.stall_after
        return ok, {"loop": "turning" if ok else "stalled", "last_turn_age_s": round(age, 3),
                    "stall_after_s": self.stall_after}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, health: HealthCheck | None):
        self.registry = registry
        self.health = health
        super().__init__(address, _Handler)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._health()
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        try:
            body = encoder(self.server.registry)
        except Exception:
            log.exception("metrics collection failed")
            self._reply(500, b"metrics collection failed\n", "text/plain; charset=utf-8")
            return
        self._reply(200, body, content_type)

    def _health(self) -> None:
        ok: bool
        detail: Any
        try:
            ok, detail = self.server.health() if self.server.health else (True, None)
        except Exception as exc:
            # a broken health check is itself a reason to be taken out of rotation, not to crash
            log.warning("health check raised", exc_info=True)
            ok, detail = False, {"error": f"{type(exc).__name__}: {exc}"}
        body = json.dumps({"status": "ok" if ok else "unhealthy", "detail": detail}, default=str)
        self._reply(200 if ok else 503, body.encode() + b"\n", "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # BaseHTTPRequestHandler writes every scrape to stderr; keep stderr for our one-line events
        log.debug("http %s", format % args)


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` for ``registry`` (default: the global one) on ``host:port``.

    ``start()`` binds (raising ``OSError`` if the port is taken) and starts the serving thread;
    ``stop()`` stops it and releases the port, and is safe to call twice. Also a context manager.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: CollectorRegistry | None = None,
        health: HealthCheck | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.registry = registry if registry is not None else REGISTRY
        self.health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the free one chosen for port 0); only while started."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        if self._server is not None:
            raise RuntimeError("MetricsServer already started")
        server_cls = _Server6 if ":" in self.host else _Server
        self._server = server_cls((self.host, self._requested_port), self.registry, self.health)
        # poll_interval bounds how long stop() waits for the loop to notice
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"metrics-http-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("metrics server listening", extra={"url": self.url})
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
