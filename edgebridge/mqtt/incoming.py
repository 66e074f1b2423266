"""The common shape of an incoming PUBLISH, as plain objects: what
:meth:`edgebridge.mqtt.threaded.ThreadedClient._handle_publish` hands to ``on_message`` instead of
paho's ``MQTTMessage`` and ``Properties`` (whose construction was most of paho's thread's CPU per
message: a validating ``__setattr__`` per property, a ``threading.Condition`` per message).

The decoding here accepts only what it can judge exactly as paho would; anything else raises
:class:`Malformed`, and the caller hands the packet to paho, which decodes (and judges) it.
"""

from __future__ import annotations

__all__ = ["FastMessage", "FastProperties", "Malformed", "decode_properties", "read_str"]


class FastProperties:
    """The PUBLISH properties a broker forwards, as plain attributes (``None``: absent); read like
    paho's ``Properties`` (``getattr(props, "ContentType", None)``)."""

    __slots__ = ("ContentType", "CorrelationData", "MessageExpiryInterval", "PayloadFormatIndicator",
                 "ResponseTopic", "UserProperty")

    def __init__(self) -> None:
        self.ContentType: str | None = None
        self.CorrelationData: bytes | None = None
        self.MessageExpiryInterval: int | None = None
        self.PayloadFormatIndicator: int | None = None
        self.ResponseTopic: str | None = None
        self.UserProperty: list[tuple[str, str]] | None = None


class FastMessage:
    """What the uplink reads of an incoming PUBLISH (the attributes of paho's ``MQTTMessage`` it uses)."""

    __slots__ = ("dup", "mid", "payload", "properties", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, mid: int, dup: bool, retain: bool,
                 properties: FastProperties) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.dup = dup
        self.retain = retain
        self.properties = properties


class Malformed(Exception):
    """Not the common shape: let paho decode (and judge) the packet."""


def read_str(data: bytes, pos: int) -> tuple[bytes, int]:
    """The two-byte-length string or binary data at ``pos``, and the position after it."""
    end = pos + 2 + (data[pos] << 8 | data[pos + 1])
    if end > len(data):
        raise Malformed
    return data[pos + 2 : end], end


def decode_properties(data: bytes, pos: int, end: int) -> FastProperties:
    """The properties in ``data[pos:end]``: only those a broker forwards from a publisher."""
    props = FastProperties()
    seen = 0
    while pos < end:
        ident = data[pos]
        pos += 1
        if ident != 0x26:  # only the user property may repeat: paho rejects any other twice
            bit = 1 << (ident & 0x3F)
            if seen & bit:
                raise Malformed
            seen |= bit
        if ident == 0x03:
            raw, pos = read_str(data, pos)
            props.ContentType = raw.decode()
        elif ident == 0x26:
            key, pos = read_str(data, pos)
            value, pos = read_str(data, pos)
            if props.UserProperty is None:
                props.UserProperty = []
            props.UserProperty.append((key.decode(), value.decode()))
        elif ident == 0x09:
            props.CorrelationData, pos = read_str(data, pos)
        elif ident == 0x08:
            raw, pos = read_str(data, pos)
            props.ResponseTopic = raw.decode()
        elif ident == 0x01:
            props.PayloadFormatIndicator = data[pos]
            pos += 1
        elif ident == 0x02:
            props.MessageExpiryInterval = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
        else:
            raise Malformed  # e.g. a topic alias or subscription identifier: paho's path
    if pos != end:
        raise Malformed
    return props
