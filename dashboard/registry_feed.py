"""The device registry (``iot.devices``), followed on a thread of its own.

The enricher's own reader (:class:`enricher.registry.Registry`) does the reading and the validation, so
the dashboard shows exactly the devices the enricher joins with. The thread publishes a fresh dict after
each change (a reference swap: readers never see a dict being changed). A registry topic that does not
exist yet is retried every few seconds; the page then lists the devices the sink has seen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from edgebridge.errors import EdgeBridgeError

__all__ = ["RegistryFeed"]

log = logging.getLogger(__name__)


class RegistryFeed:
    def __init__(self, consumer_config: Mapping[str, Any], topic: str) -> None:
        from enricher.registry import DeviceInfo

        self._config = dict(consumer_config)
        self.topic = topic
        self.devices: dict[str, DeviceInfo] = {}
        self.version = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-feed", daemon=True)

    def start(self) -> RegistryFeed:
        self._thread.start()
        return self

    def _run(self) -> None:
        from enricher.registry import Registry

        while not self._stop.is_set():
            registry = Registry(self._config, self.topic)
            try:
                registry.load(timeout=60)
                self._publish(registry)
                self.error = None
                while not self._stop.wait(0.5):
                    if registry.poll():
                        self._publish(registry)
                return
            except EdgeBridgeError as exc:
                self.error = str(exc)
                log.warning("registry not readable; retrying", extra={"error": str(exc)})
            except Exception as exc:  # a KafkaException: the page says so, the thread tries again
                self.error = str(exc)
                log.warning("registry read failed; retrying", exc_info=True)
            finally:
                registry.close()
            self._stop.wait(5)

    def _publish(self, registry: Any) -> None:
        self.devices = dict(registry.devices)
        self.version += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
