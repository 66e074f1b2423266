"""Pieces of the MQTT 5 wire format that the fast paths write: Variable Byte Integers and the
two-byte-length strings and binary data of properties and topics."""

from __future__ import annotations

__all__ = ["str16", "varint"]


def varint(n: int) -> bytes:
    """An MQTT Variable Byte Integer (remaining lengths, property lengths): 7 bits a byte, low first."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def str16(data: bytes) -> bytes:
    """A UTF-8 string or binary data as MQTT writes it: a two-byte big-endian length, then the bytes."""
    return len(data).to_bytes(2, "big") + data
