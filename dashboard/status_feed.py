"""Online/offline: the devices' retained ``{prefix}/{device}/status`` topic, followed over MQTT.

The agent publishes ``online`` (retained) when it connects and its Last Will publishes ``offline``, so
subscribing to ``{prefix}/+/status`` gives every device's state at once (the retained messages) and
each change after. The client is the bridge's (:func:`edgebridge.mqtt.threaded.new_client`, the same
settings, TLS and reconnect policy); it never publishes. paho's thread writes ``states`` one key at a
time (a single dict assignment); readers take a copy.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from edgebridge.settings import MqttSettings

__all__ = ["StatusFeed"]

log = logging.getLogger(__name__)


class StatusFeed:
    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self.states: dict[str, tuple[str, float]] = {}  # device -> (online/offline/other, when seen)
        self.connected = False
        self.version = 0
        self._client: Any = None

    def start(self) -> StatusFeed:
        from edgebridge.mqtt.threaded import new_client

        client = new_client(self.settings, f"edgebridge-dashboard-{uuid.uuid4().hex[:8]}", manual_ack=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        client.loop_start()
        self._client = client
        return self

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT connect refused", extra={"reason": str(reason)})
            return
        self.connected = True
        client.subscribe(f"{self.settings.topic_prefix}/+/status", qos=1)

    def _on_disconnect(self, *args: Any) -> None:
        self.connected = False

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        parts = str(message.topic).split("/")
        if len(parts) < 3 or parts[-1] != "status":
            return
        device = parts[-2]
        state = bytes(message.payload[:32]).decode("utf-8", "replace").strip() or "?"
        self.states[device] = (state, time.time())
        self.version += 1

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
