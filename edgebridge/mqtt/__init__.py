"""The MQTT adapter: everything of the agent and the bridge that reaches into paho-mqtt's internals.

paho's public API packs properties, decodes PUBACKs and PUBLISHes into objects, and makes a syscall per
packet; at thousands of messages a second those were most of the agent's and the bridge's MQTT cost
(figures: ``bench/RESULTS.md``, Agent, Bridge and Receipts). The modules here take the common cases on
a shorter path and leave every other case to paho's own code:

- :mod:`~edgebridge.mqtt.client`: :class:`~edgebridge.mqtt.client.FastClient`, the success-PUBACK
  fast path both use, and the socket handling of a client driven by its caller's loop (the agent);
  ``connect_properties``;
- :mod:`~edgebridge.mqtt.threaded`: the client that paho's network thread runs (the bridge): buffered
  reads, incoming PUBLISHes without paho's objects, PUBACKs and receipts as one write each, and a
  reconnect wait with full jitter;
- :mod:`~edgebridge.mqtt.incoming`: the common shape of an incoming PUBLISH, decoded;
- :mod:`~edgebridge.mqtt.properties`: outgoing PUBLISH properties packed once;
- :mod:`~edgebridge.mqtt.sockets`: the buffered sockets;
- :mod:`~edgebridge.mqtt.wire`: the pieces of the wire format they write.

They override private methods and read private attributes of paho (``_handle_pubackcomp``,
``_handle_publish``, ``_create_socket``, ``_reconnect_wait``, ``_in_packet``, ``_out_messages``,
``_packet_queue``, ``_sock``, ...), as they are in the versions of :data:`PAHO_REQUIREMENT`, the one pin
of paho in the project (``pyproject.toml``'s ``[mqtt]`` extra, which ``[agent]`` and ``[cloud]``
include, says the same: ``tests/test_mqtt_adapter.py``). No other module may touch paho's internals
(``tests/test_boundaries.py``), so a new paho release is checked against this package alone; the tests
of ``tests/agent`` and ``tests/bridge`` and ``tests/test_mqtt_adapter.py`` exercise every path.

Imports paho and the standard library, never confluent-kafka: a device imports it too.
"""

from __future__ import annotations

__all__ = ["PAHO_REQUIREMENT"]

PAHO_REQUIREMENT = "paho-mqtt>=2.2,<2.3"
