"""The downlink: commands from Kafka to devices over MQTT, committing offsets only after PUBACK.

Delivery guarantee (at least once), per command record of ``topics.commands`` (key = device id):

1. consumed by the group ``downlink.group_id`` (auto commit off);
2. published at QoS 1 to ``{prefix}/{device}/commands`` with the MQTT 5 Response Topic
   ``{prefix}/{device}/commands/response`` and Correlation Data (the record's ``correlation_id``
   header, else ``topic/partition/offset``);
   and, when the record has an ``expires_ms`` header (Unix milliseconds, as ``edgebridge command``
   writes it), the MQTT 5 Message Expiry Interval of the time left: the broker drops the command
   from an offline device's session once it expired, so a device that comes back later never gets
   it; a record already expired when consumed is not published at all (counted as ``expired``);
3. its offset is committed once the broker's PUBACK for it *and* for every command consumed before it
   arrived (in consumption order), so a crash before 3 re-sends the command, never skips it.

The device's reply, published on the response topic with the same correlation data, is carried up by
the uplink to ``topics.command_responses`` with a ``correlation_data`` header.
A record whose key is not a device id cannot be routed: it is counted, logged and committed past; so
is a command larger than ``uplink.max_message_bytes`` (with its correlation data): a broker with a
``max_packet_size`` (the shipped Mosquitto's is that limit plus room for headers) would disconnect the
downlink for it, and the command, never committed, would be sent again after every reconnect.
At most ``max_in_flight`` commands wait for their PUBACK. While MQTT is down or that window is full,
the assigned partitions are *paused* and the consumer is still polled: it keeps its place in the group
(``max.poll.interval.ms``) and its events and log lines are served instead of piling up in memory
through a long outage; consuming resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.config import BridgeConfig
from bridge.metrics import BridgeMetrics
from edgebridge.envelope import is_deviceid
from edgebridge.logs import rate_limited
from edgebridge.metrics import LoopProgress
from edgebridge.mqtt.threaded import new_client
from edgebridge.topics import command_response_topic, commands_topic

__all__ = ["Downlink"]

log = logging.getLogger(__name__)

PROTECTED = ("enable.auto.commit", "group.id", "enable.auto.offset.store")


@dataclass(slots=True)
class _Sent:
    topic: str
    partition: int
    offset: int
    info: mqtt.MQTTMessageInfo | None  # None: nothing to wait for (an unroutable record)

    @property
    def done(self) -> bool:
        return self.info is None or self.info.is_published()


class Downlink:
    def __init__(self, config: BridgeConfig, metrics: BridgeMetrics) -> None:
        self._config = config.downlink
        self._prefix = config.mqtt.topic_prefix
        self._commands_topic = config.topics.commands
        self._metrics = metrics
        self._drain_timeout = config.uplink.drain_timeout
        self._max_bytes = config.uplink.max_message_bytes
        ours = {"group.id": self._config.group_id, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "client.id": self._config.client_id}
        self._consumer = Consumer(config.kafka.client_config(ours, PROTECTED))
        self._mqtt_settings = config.mqtt_for(config.downlink)
        self._mqtt = new_client(self._mqtt_settings, self._config.client_id, manual_ack=False)
        self._connected = threading.Event()
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_disconnect = lambda *_args: self._connected.clear()
        self._ever_connected = False
        self._sent: deque[_Sent] = deque()
        self._flowing = True  # the assigned partitions are not paused
        self.progress = LoopProgress(config.stall_after)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while its MQTT session is up and its loop turns."""
        turning, loop = self.progress.health()
        connected = self._connected.is_set()
        return connected and turning, {"downlink_connected": connected, "downlink": loop,
                                       "commands_in_flight": len(self._sent)}

    def run(self, stop: threading.Event) -> None:
        s = self._mqtt_settings
        self._mqtt.connect_async(s.host, s.port, s.keepalive)
        self._mqtt.loop_start()
        self._consumer.subscribe([self._commands_topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke)
        try:
            while not stop.is_set():
                self.progress.turn()
                self._step()
            deadline = time.monotonic() + self._drain_timeout
            while self._sent and time.monotonic() < deadline:
                self._commit_ready()
                time.sleep(0.01)  # waiting on paho's thread for PUBACKs; bounded by drain_timeout
            self._commit_ready()
        finally:
            self._consumer.close()
            self._mqtt.disconnect()
            self._mqtt.loop_stop()

    def _step(self) -> None:
        flowing = self._connected.is_set() and len(self._sent) < self._config.max_in_flight
        if flowing != self._flowing:
            self._flow(flowing)
        # paused, poll returns no record: it serves rebalances, errors and log lines
        msg = self._consumer.poll(0.05 if flowing else 0.1)
        if msg is not None:
            self._publish(msg)
        self._commit_ready()

    def _flow(self, flowing: bool) -> None:
        """Pause the assigned partitions (MQTT down, window full) or resume them."""
        self._flowing = flowing
        assigned = self._consumer.assignment()
        if assigned:
            (self._consumer.resume if flowing else self._consumer.pause)(assigned)

    def _publish(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                rate_limited(log, ("consume", err.code()), 30.0).warning(
                    "command consumer error", extra={"error": str(err)})
            return
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        key = msg.key()
        device = key.decode("utf-8", "replace") if key else ""
        if not is_deviceid(device):
            self._metrics.commands_invalid.labels("bad_key").inc()
            log.warning("command without a device id key, skipped",
                        extra={"topic": topic, "partition": partition, "offset": offset})
            self._sent.append(_Sent(topic, partition, offset, None))
            return
        headers = dict(msg.headers() or [])
        correlation = headers.get("correlation_id") or f"{topic}/{partition}/{offset}".encode()
        size = len(msg.value() or b"") + len(correlation)
        if size > self._max_bytes:
            self._metrics.commands_invalid.labels("oversized").inc()
            log.warning("command larger than uplink.max_message_bytes, skipped",
                        extra={"topic": topic, "partition": partition, "offset": offset, "bytes": size,
                               "limit": self._max_bytes})
            self._sent.append(_Sent(topic, partition, offset, None))
            return
        props = Properties(PacketTypes.PUBLISH)
        left = _time_left(headers.get("expires_ms"))
        if left is not None:
            if left <= 0:
                self._metrics.commands_invalid.labels("expired").inc()
                log.info("command expired before it could be sent, skipped",
                         extra={"device": device, "topic": topic, "partition": partition, "offset": offset})
                self._sent.append(_Sent(topic, partition, offset, None))
                return
            props.MessageExpiryInterval = max(1, math.ceil(left))
        props.ResponseTopic = command_response_topic(device, self._prefix)
        props.CorrelationData = correlation if isinstance(correlation, bytes) else correlation.encode()
        content_type = headers.get("content-type")
        if content_type:
            props.ContentType = content_type.decode() if isinstance(content_type, bytes) else content_type
        info = self._mqtt.publish(commands_topic(device, self._prefix), msg.value() or b"", qos=1,
                                  properties=props)
        self._sent.append(_Sent(topic, partition, offset, info))

    def _commit_ready(self) -> None:
        offsets: dict[tuple[str, int], int] = {}
        published = popped = 0
        while self._sent and self._sent[0].done:
            sent = self._sent.popleft()
            offsets[(sent.topic, sent.partition)] = sent.offset + 1
            published += sent.info is not None
            popped += 1
        if not offsets:
            return
        self._metrics.commands_published.inc(published)
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                  asynchronous=False)
            self._metrics.commands_committed.inc(popped)
        except Exception as exc:  # KafkaException: the commands are re-sent after a restart/rebalance
            rate_limited(log, "commit", 30.0).warning("command offset commit failed",
                                                      extra={"error": str(exc)})

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        if not self._flowing and partitions:
            consumer.pause(partitions)  # assigned while MQTT is down: wait with the others

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # commit what is PUBACKed; the rest is re-sent by the partition's next owner (at least once)
        self._commit_ready()
        gone = {(p.topic, p.partition) for p in partitions}
        self._sent = deque(s for s in self._sent if (s.topic, s.partition) not in gone)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("downlink mqtt connect refused", extra={"reason": str(reason)})
            return
        if self._ever_connected:
            self._metrics.downlink_reconnects.inc()
        self._ever_connected = True
        self._connected.set()


def _time_left(header: bytes | str | None) -> float | None:
    """Seconds until the ``expires_ms`` header's deadline; ``None`` when there is none (or unreadable:
    a command is never dropped on a header it cannot read)."""
    if header is None:
        return None
    try:
        deadline_ms = int(header.decode() if isinstance(header, bytes) else header)
    except (ValueError, UnicodeDecodeError):
        rate_limited(log, "bad-expiry", 60.0).warning("command with an unreadable expires_ms header",
                                                      extra={"expires_ms": repr(header)[:60]})
        return None
    return deadline_ms / 1000 - time.time()
