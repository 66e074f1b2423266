"""Building a paho MQTT 5 client from :class:`~edgebridge.settings.MqttSettings` (TLS, credentials)."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgebridge.settings import MqttSettings

__all__ = ["connect_properties", "new_client"]


def new_client(settings: MqttSettings, client_id: str, *, manual_ack: bool) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.username is not None:
        password = settings.password.reveal() if settings.password is not None else None
        client.username_pw_set(settings.username, password)
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    # paho's own reconnect loop: it owns the thread; capped so an hour-long outage retries every 30 s
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(session_expiry: int, receive_maximum: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props
