"""Seeded hostile input: MQTT payloads for a device's events topic, and records for ``iot.events.raw``.

What a fuzz suite, a chaos run or a simulator throws at the pipeline to check guarantee 5 ("bad input
never stops the stream"). Grammar-based: a valid event or batch of an attacker device is built, then
mutated by one of the classes of :data:`MUTATIONS` (drop, null or retype an attribute, duplicate a key,
spoof the device, NaN/inf/2**64 numbers, NUL and control characters, invalid UTF-8, nesting up to and
past 1,024, huge strings, forged gap ranges, invalid epochs, unknown types, ...); a batch mixes good and
mutated items; besides, random bytes and random JSON, and a few oversized payloads. The same seed gives
the same payloads, in the same order.

Some of what comes out is valid by design or by chance (a mutation that keeps the event valid: an
extension attribute, a string reading of 200 KiB, a forged but legal gap range). Such an event is the
attacker's own and is processed like any other. So that "processed once per (device, epoch, seq)" stays
the whole truth for them, the valid seqs of each (device, epoch) only grow in the order of the output,
or repeat exactly (a replayed event): every mutation that touches ``seq`` makes it invalid, and a
device's events use a few epochs only (the enricher keeps eight per device).

Usage::

    gen = Hostile(seed=7, devices=["atk-0", "atk-1"])
    for p in gen.mqtt(10_000):          # Payload(device, value, kind): publish on {prefix}/{device}/events
        ...
    for r in gen.raw(10_000, partitions=2):   # RawRecord(key, value, headers, partition, kind)
        ...
"""

from simulators.hostile.generator import CLASSICS, NESTED_BATCH, Hostile, Payload, RawRecord
from simulators.hostile.mutations import MUTATIONS

__all__ = ["CLASSICS", "MUTATIONS", "NESTED_BATCH", "Hostile", "Payload", "RawRecord"]
