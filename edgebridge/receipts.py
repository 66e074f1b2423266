"""Receipts: the cloud telling a device which of its seqs Kafka holds.

The second stage of the acknowledgment (the first, the MQTT broker's PUBACK, is only flow control: a
broker that acknowledged a message may still lose it). The bridge publishes, QoS 1, on
``{prefix}/{device_id}/receipts`` (:func:`edgebridge.topics.receipts_topic`)::

    {"deviceid": "pi-1", "epoch": "0f3a9c2e7b1d4a60", "ranges": [[1, 500], [502, 510]]}

meaning "Kafka has confirmed every seq in these inclusive ranges of this epoch of this device" (in
``iot.events.raw``, or in the dead letters for an event that was refused). ``epoch`` is ``""`` for a
device from before epochs. Receipts are facts, not commands: any bridge replica may send one, a second
copy changes nothing, a lost one costs only a resend of those events by the agent.

The agent deletes an outbox row only when a receipt of its own device and epoch covers it; it counts
and ignores a receipt that names another device, another epoch, or seqs it never assigned.

Decoding is total: :func:`decode_receipt` returns a :class:`Receipt` or raises
``EnvelopeError("bad_receipt")``, whatever the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import orjson

from edgebridge._validate import MAX_SEQ, is_deviceid, is_epoch
from edgebridge.errors import EnvelopeError

__all__ = [
    "MAX_RANGES",
    "RECEIPT_CONTENT_TYPE",
    "Receipt",
    "decode_receipt",
    "encode_receipt",
    "merge_ranges",
]

RECEIPT_CONTENT_TYPE = "application/json"
MAX_RANGES = 1024  # per receipt message; more ranges go in further messages
_MAX_BYTES = 64 * 1024  # MAX_RANGES ranges of two 19-digit seqs fit in ~42 KiB


class Receipt(NamedTuple):
    deviceid: str
    epoch: str
    ranges: list[tuple[int, int]]  # inclusive, sorted, disjoint, not adjacent


def merge_ranges(ranges: Iterable[tuple[int, int] | list[int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint, non-adjacent inclusive ranges covering exactly the seqs of ``ranges``."""
    out: list[tuple[int, int]] = []
    for first, last in sorted((a, b) for a, b in ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def encode_receipt(deviceid: str, epoch: str, ranges: list[tuple[int, int]]) -> bytes:
    """One receipt message; ``ranges`` as :func:`merge_ranges` returns them, at most :data:`MAX_RANGES`."""
    return orjson.dumps({"deviceid": deviceid, "epoch": epoch, "ranges": ranges})


def decode_receipt(payload: bytes | bytearray | memoryview) -> Receipt:
    """The receipt in ``payload``; ``EnvelopeError("bad_receipt")`` for anything else."""
    if len(payload) > _MAX_BYTES:
        raise EnvelopeError("bad_receipt", f"{len(payload)} bytes, the limit is {_MAX_BYTES}")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("bad_receipt", f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EnvelopeError("bad_receipt", "a receipt is a JSON object")
    deviceid, epoch, raw = obj.get("deviceid"), obj.get("epoch"), obj.get("ranges")
    if not is_deviceid(deviceid):
        raise EnvelopeError("bad_receipt", "deviceid missing or not a device id")
    if not isinstance(epoch, str) or (epoch and not is_epoch(epoch)):
        raise EnvelopeError("bad_receipt", "epoch missing or not an epoch")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_RANGES:
        raise EnvelopeError("bad_receipt", f"ranges must be a list of 1..{MAX_RANGES} [first, last] pairs")
    ranges = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or type(item[0]) is not int
            or type(item[1]) is not int
            or not 1 <= item[0] <= item[1] <= MAX_SEQ
        ):
            raise EnvelopeError("bad_receipt", f"range {str(item)[:40]} is not [first, last] in 1..2**63-1")
        ranges.append((item[0], item[1]))
    return Receipt(deviceid, epoch, merge_ranges(ranges))
