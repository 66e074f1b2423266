"""Pieces of the MQTT 5 wire format that the agent's and the bridge's paho fast paths both write."""

from __future__ import annotations

__all__ = ["varint"]


def varint(n: int) -> bytes:
    """An MQTT Variable Byte Integer (remaining lengths, property lengths): 7 bits a byte, low first."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)
