"""Receipts at the agent against a real Mosquitto: a receipt sent while the agent was away still arrives
(its persistent session), and nothing but a receipt deletes a row."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from edgebridge.receipts import encode_receipt
from tests.agent.conftest import Subscriber, agent_config, agent_running
from tests.waiting import wait_for


def test_receipts_sent_while_the_agent_was_away_arrive_and_only_they_delete(
    tmp_path: Path, mqtt_url: str, mqtt_prefix: str, subscriber: Callable[..., Subscriber]
) -> None:
    device = "dev-away"
    reader = subscriber(f"{mqtt_prefix}/{device}/events", receipts=False)  # PUBACKs, never a receipt
    config = agent_config(tmp_path / "state", mqtt_url, mqtt_prefix, device, **{
        "simulated.enabled": True, "simulated.interval": 0.0, "simulated.limit": 200,
        "forwarder.receipt_timeout": 600.0, "forwarder.drain_on_stop": 0.5,
    })
    with agent_running(config) as agent:
        wait_for(lambda: len(reader.events()) >= 200, 30, "200 events delivered")
        wait_for(lambda: agent.forwarder.stats.acked_events >= 200, 10, "200 PUBACKs")
        assert agent.outbox.stats.rows == 200  # PUBACKed, not receipted: every row stays
        epoch = agent.outbox.epoch
    # The agent is away; the cloud's receipt for 1..150 waits in its persistent session.
    u = urlparse(mqtt_url)
    cloud = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cloud-{uuid.uuid4().hex[:6]}",
                        protocol=mqtt.MQTTv5)
    cloud.connect(u.hostname or "127.0.0.1", u.port or 1883)
    cloud.loop_start()
    try:
        receipt = encode_receipt(device, epoch, [(1, 150)])
        info = cloud.publish(f"{mqtt_prefix}/{device}/receipts", receipt, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        cloud.disconnect()
        cloud.loop_stop()
    quiet = agent_config(tmp_path / "state", mqtt_url, mqtt_prefix, device, **{
        "forwarder.receipt_timeout": 600.0})  # the same outbox, no source: nothing new is committed
    with agent_running(quiet) as agent:
        wait_for(lambda: agent.forwarder.stats.receipts >= 1, 15, "the receipt queued while away")
        wait_for(lambda: agent.outbox.stats.rows == 50, 10, "rows 1..150 deleted")
        assert (agent.outbox.stats.acked, agent.outbox.stats.last_ack_seq) == (150, 150)
