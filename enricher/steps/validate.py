"""``validate`` (the registry join and the checks the envelope codec cannot make) and ``dedup``.

``dedup`` keys on (device, epoch, seq) (:mod:`enricher.dedup`): a duplicate is dropped, a late event
flagged, a jump alerted as ``gap_opened``, a gap event's range explained, and the first event of a new
epoch after an old one alerted as ``device_state_lost``.
"""

from __future__ import annotations

from edgebridge.envelope import GAP_TYPE, READING_TYPE
from enricher.dedup import EpochNotice, Verdict
from enricher.steps import Context, Item, Reject, Stats

__all__ = ["dedup", "note_epochs", "validate"]


def validate(item: Item, ctx: Context) -> Item:
    event = item.event
    if event.type != READING_TYPE and event.type not in ctx.known_types:
        raise Reject("unknown_type", f"{event.type!r} is not in [pipeline] known_types")
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
    obs = ctx.dedup.observe(event.deviceid, ctx.partition, event.seq, event.epoch, item.ingest_ms)
    if obs.epochs is not None:
        note_epochs(obs.epochs, item, ctx.stats)
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
                                            event.data["last"], event.epoch, event.seq)
        ctx.stats.gaps_explained += closed
        ctx.stats.gaps_closed += closed
        ctx.stats.seqs_expired += expired
    return item


def note_epochs(notice: EpochNotice, item: Item, stats: Stats) -> None:
    """Count what happened to the device's epochs; a new epoch after an old one becomes an alert."""
    stats.epochs_forgotten_idle += notice.forgotten_idle
    stats.epochs_forgotten_over_cap += notice.forgotten_over_cap
    if notice.change is not None:
        stats.epoch_changes += 1
        item.alerts.append(notice.change.alert())
