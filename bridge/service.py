"""The bridge process: uplink and downlink, with one lifecycle.

``Bridge.run(stop)`` returns once ``stop`` is set and both directions have drained (SIGTERM: stop taking
messages, finish deliveries, acknowledge what Kafka confirmed, disconnect). ``/metrics`` (the registry
of :attr:`Bridge.metrics`) and ``/healthz`` (:meth:`Bridge.health`) are served by the service shell
(:mod:`edgebridge.service`) that ``edgebridge bridge run`` runs it in.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from bridge.config import BridgeConfig
from bridge.metrics import BridgeMetrics
from bridge.uplink import Uplink

__all__ = ["Bridge"]

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, config: BridgeConfig, metrics: BridgeMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or BridgeMetrics()
        self.uplink = Uplink(config, self.metrics)
        self.downlink: Any = None
        if config.downlink.enabled:
            from bridge.downlink import Downlink

            self.downlink = Downlink(config, self.metrics)

    def health(self) -> tuple[bool, dict[str, Any]]:
        ok, detail = self.uplink.health()
        if self.downlink is not None:
            down_ok, down_detail = self.downlink.health()
            ok, detail = ok and down_ok, {**detail, **down_detail}
        return ok, detail

    def run(self, stop: threading.Event) -> None:
        down_thread = None
        try:
            self.uplink.start()
            if self.downlink is not None:
                # the downlink has its own consumer poll loop and MQTT client: its own thread
                down_thread = threading.Thread(target=self.downlink.run, args=(stop,), name="downlink")
                down_thread.start()
            self.uplink.run(stop)
        finally:
            stop.set()
            if down_thread is not None:
                down_thread.join()
            log.info("bridge stopped")
