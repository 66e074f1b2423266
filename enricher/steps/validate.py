"""``validate`` (the registry join and the checks the envelope codec cannot make) and ``dedup``."""

from __future__ import annotations

from edgebridge.envelope import GAP_TYPE, READING_TYPE
from enricher.dedup import Verdict
from enricher.steps import Context, Item, Reject

__all__ = ["dedup", "validate"]


def validate(item: Item, ctx: Context) -> Item:
    event = item.event
    if event.type not in (READING_TYPE, GAP_TYPE):
        raise Reject("unknown_type", f"the enricher takes readings and gaps, not {event.type!r}")
    if item.key is not None and item.key != event.deviceid:
        raise Reject("device_mismatch", f"event of {event.deviceid!r} under key {item.key!r}")
    item.device = ctx.registry.get(event.deviceid)
    if item.device is None:
        if ctx.settings.unknown_devices == "deadletter":
            raise Reject("unknown_device", f"{event.deviceid!r} is not in the registry")
        ctx.stats.unregistered += 1
    if item.is_reading:
        item.readings = {name: dict(r) for name, r in event.data.items()}
    return item


def dedup(item: Item, ctx: Context) -> Item | None:
    event = item.event
    obs = ctx.dedup.observe(event.deviceid, ctx.partition, event.seq)
    if obs.verdict is Verdict.DUPLICATE:
        ctx.stats.duplicates += 1
        return None
    ctx.stats.seqs_expired += obs.expired
    ctx.stats.gaps_closed += obs.gaps_closed
    if obs.verdict is Verdict.LATE:
        ctx.stats.late += 1
        item.late = True
        item.flags.append("late")
    if obs.gap_opened is not None:
        ctx.stats.gaps_opened += 1
        first, last = obs.gap_opened
        item.alerts.append({"kind": "gap_opened", "first": first, "last": last, "count": last - first + 1})
    if event.type == GAP_TYPE:
        closed, expired = ctx.dedup.explain(event.deviceid, ctx.partition, event.data["first"],
                                            event.data["last"])
        ctx.stats.gaps_explained += closed
        ctx.stats.gaps_closed += closed
        ctx.stats.seqs_expired += expired
    return item
