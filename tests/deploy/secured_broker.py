"""The shipped deploy/mosquitto/mosquitto.conf run by the real Mosquitto, and an MQTT 5 client that
records what the broker answered.

The shipped file is read and only its container paths and its port are rewritten (plus a ``user`` line:
Mosquitto started as root, as in CI, would otherwise switch to the ``mosquitto`` user, who cannot read
the test's 0600 files); :func:`shipped_conf` checks that nothing else differs.
"""

from __future__ import annotations

import getpass
import ssl
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edgebridge.devbrokers._process import free_port, require_tool
from edgebridge.devbrokers.base import ManagedBroker
from edgebridge.devbrokers.probes import mqtt_connack
from tests.waiting import wait_for

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"
SECRETS, DATA = "/mosquitto/secrets/", "/mosquitto/data/"


def shipped_conf(secrets: Path, data: Path, port: int) -> str:
    """The shipped configuration with its secrets and data folders and its listener port replaced."""
    shipped = SHIPPED.read_text()
    assert shipped.count("\nlistener ") == 1 and "\nlistener 8883\n" in shipped, "one listener, 8883"
    ours = shipped.replace(SECRETS, f"{secrets}/").replace(DATA, f"{data}/")
    ours = ours.replace("\nlistener 8883\n", f"\nlistener {port} 127.0.0.1\n")
    ours += f"user {getpass.getuser()}\n"
    # nothing but those: undo each replacement and the file is the shipped one again
    undone = ours.removesuffix(f"user {getpass.getuser()}\n")
    undone = undone.replace(f"\nlistener {port} 127.0.0.1\n", "\nlistener 8883\n")
    undone = undone.replace(f"{secrets}/", SECRETS).replace(f"{data}/", DATA)
    assert undone == shipped
    assert str(secrets) not in shipped and str(data) not in shipped
    return ours


class ShippedMosquitto(ManagedBroker):
    """Mosquitto with the shipped configuration and the files of a deployment's ``mosquitto/`` folder."""

    name = "mosquitto"

    def __init__(self, state_dir: Path, secrets: Path) -> None:
        super().__init__(state_dir)
        self.secrets = secrets
        self.binary = require_tool("mosquitto", "mosquitto")

    @property
    def conf_path(self) -> Path:
        return self.state_dir / "mosquitto.conf"

    def prepare(self) -> None:
        self.port = self.port or free_port()
        data = self.state_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(shipped_conf(self.secrets, data, self.port))

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf_path)]

    def probe(self) -> bool:
        # no credentials: a TLS handshake and a CONNACK refusing us (5: not authorised) mean it is up
        context = ssl.create_default_context(cafile=str(self.secrets / "ca.crt"))
        return mqtt_connack("127.0.0.1", self.port, tls=context) == 5

    def describe(self) -> dict[str, Any]:
        return {"port": self.port, "pid": self.pid, "log": str(self.log_path)}


class Client:
    """A paho MQTT 5 client over TLS that records CONNACK, PUBACK, SUBACK and DISCONNECT reason codes
    and the messages it receives."""

    def __init__(self, port: int, ca_file: Path, username: str | None, password: str | None, *,
                 client_id: str | None = None) -> None:
        self.connack: ReasonCode | None = None
        self.connack_properties: Any = None
        self.disconnects: list[ReasonCode] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        client_id = client_id or f"probe-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.port = port

    # paho's callbacks (its network thread)
    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, props: Any) -> None:
        self.connack, self.connack_properties = rc, props
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        with self._lock:
            self.disconnects.append(rc)
        self._connected.set()  # a refusal without CONNACK ends the wait too

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._lock:
            self.pubacks[mid] = rc.value

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, rcs: list[ReasonCode], _p: object) -> None:
        with self._lock:
            self.subacks[mid] = [rc.value for rc in rcs]

    def connect(self, timeout: float = 10.0) -> ReasonCode | None:
        """Connect and wait for the CONNACK (or the connection's end); the CONNACK's reason code."""
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._connected.wait(timeout), "neither CONNACK nor disconnect"
        return self.connack

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.pubacks, timeout, f"PUBACK of {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str, timeout: float = 10.0) -> int:
        """Subscribe at QoS 1 and return the SUBACK's reason code."""
        _, mid = self.client.subscribe(topic, qos=1)
        wait_for(lambda: mid in self.subacks, timeout, f"SUBACK of {topic}")
        return self.subacks[mid][0]

    def payloads(self, topic: str | None = None) -> list[bytes]:
        with self._lock:
            return [m.payload for m in self.messages if topic is None or m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
