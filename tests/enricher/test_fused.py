"""The fused default chain equals the step-by-step one: pure unit tests on generated events, no brokers."""

from __future__ import annotations

import random
from typing import Any

import pytest

from edgebridge.envelope import GAP_TYPE, READING_TYPE, Event
from enricher.config import PipelineSettings
from enricher.dedup import DedupTable
from enricher.registry import DeviceInfo, parse_device
from enricher.steps import (
    Context,
    FusedPipeline,
    History,
    Item,
    Pipeline,
    Reject,
    Stats,
    StepFailed,
    build_pipeline,
)

UNITS = ["degF", "K", "Cel", "°C", "%RH", "hPa", "kPa", "Pa", "lux", "ms", "kW", "ppm", "furlong", ""]
NAMES = ["temperature", "humidity", "pressure", "light", "power", "state"]


class Devices:
    def __init__(self, devices: dict[str, DeviceInfo]) -> None:
        self.devices = devices

    def get(self, deviceid: str) -> DeviceInfo | None:
        return self.devices.get(deviceid)


def _registry(rng: random.Random, n: int) -> dict[str, DeviceInfo]:
    out = {}
    for d in range(n):
        obj: dict[str, Any] = {"site": f"s{d % 3}"}
        if rng.random() < 0.7:
            obj["calibration"] = {name: {"offset": rng.choice([0, -0.4, 1.8]), "scale": rng.choice([1, 1.01])}
                                  for name in rng.sample(NAMES, 2)}
        if rng.random() < 0.7:
            obj["thresholds"] = {name: dict(rng.sample([("min", 10.0), ("max", 30.0), ("rate", 0.5)],
                                                       rng.randint(1, 3)))
                                 for name in rng.sample(NAMES, 3)}
        if rng.random() < 0.7:
            obj["units"] = {name: rng.choice(UNITS[:-1]) for name in rng.sample(NAMES, 3)}
        out[f"dev-{d}"] = parse_device(f"dev-{d}", obj)
    return out


def _value(rng: random.Random, previous: Any) -> Any:
    roll = rng.random()
    if roll < 0.3 and previous is not None:
        return previous  # stuck sensors
    if roll < 0.35:
        # -243.04 Cel: the dew point divides by zero (no derived value); 1e308 in kW, kPa, ...: inf
        return rng.choice([True, "open", -243.04, 1e308, 5e-324])
    if roll < 0.6:
        return rng.randint(-50, 1200)
    return round(rng.uniform(-50, 1200), 2)


def _events(rng: random.Random, devices: int, n: int) -> list[tuple[Event, str | None]]:
    seqs = {f"dev-{d}": 0 for d in range(devices + 2)}  # two devices are not in the registry
    used: dict[str, set[int]] = {dev: set() for dev in seqs}
    # every other device from before epochs (None); the others are reflashed now and then (a new epoch)
    epochs: dict[str, str | None] = {dev: None if i % 2 else f"{i:016x}" for i, dev in enumerate(seqs)}
    last: dict[tuple[str, str], Any] = {}
    sent: list[tuple[Event, str | None]] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.08 and sent:
            sent.append(rng.choice(sent))  # a re-send
            continue
        dev = rng.choice(sorted(seqs))
        if epochs[dev] is not None and rng.random() < 0.01:  # lost its state: seqs from 1 in a new epoch
            epochs[dev] = f"{rng.getrandbits(64):016x}"
            seqs[dev], used[dev] = 0, set()
        seqs[dev] += rng.choice([1, 1, 1, 1, 2, 5])  # jumps open gaps
        seq = seqs[dev]
        holes = [s for s in range(1, seq) if s not in used[dev]]
        if roll < 0.12 and holes:  # a late event: one that a jump left out
            seq = rng.choice(holes)
        used[dev].add(seq)
        time = f"2026-11-26T12:{i // 60 % 60:02d}:{i % 60:02d}.{rng.randint(0, 999):03d}Z"
        if rng.random() < 0.03:
            data: dict[str, Any] = {"first": max(1, seq - 3), "last": seq - 1 if seq > 1 else 1, "count": 1,
                                    "reason": "evicted"}
            etype = GAP_TYPE
        else:
            data = {}
            for name in rng.sample(NAMES, rng.randint(1, 4)):
                value = _value(rng, last.get((dev, name)))
                last[(dev, name)] = value
                unit = rng.choice(UNITS)
                data[name] = {"v": value, "u": unit} if unit else {"v": value}
            if rng.random() < 0.02:  # too large for a float: calibrate or normalise raises (one reading only)
                data[rng.choice(sorted(data))] = {"v": 10**400, "u": "degF"}
            etype = READING_TYPE if roll < 0.97 else "edgebridge.other.v1"
        key = dev if roll < 0.98 else "someone-else"
        sent.append((Event(f"e{i}", dev, seq, etype, time, data, epoch=epochs[dev]), key))
    return sent


def _run(pipeline: Pipeline, ctx: Context, event: Event, key: str | None) -> object:
    item = Item(event, key, 1_700_000_000_000)
    try:
        out = pipeline.run(item, ctx)
    except Reject as exc:
        return ("reject", exc.reason, str(exc))
    except StepFailed as exc:
        return ("failed", exc.step, type(exc.error).__name__, str(exc.error))
    if out is None:
        return None
    return (out.device, out.readings, out.derived, out.flags, out.late, out.alerts)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("unknown_devices", ["process", "deadletter"])
def test_fused_chain_equals_the_steps(seed: int, unknown_devices: str) -> None:
    rng = random.Random(seed)
    devices = Devices(_registry(rng, 8))
    settings = PipelineSettings(unknown_devices=unknown_devices, max_seen_ranges=4, stuck_count=3)  # type: ignore[arg-type]
    fused, steps = build_pipeline(settings), build_pipeline(settings, fuse=False)
    assert isinstance(fused, FusedPipeline) and not isinstance(steps, FusedPipeline)
    assert fused.names == steps.names
    contexts = [Context(devices, DedupTable(settings.max_seen_ranges), settings, Stats(), History(40))
                for _ in range(2)]
    kinds: set[str] = set()
    for i, (event, key) in enumerate(_events(rng, 8, 1500)):
        for ctx in contexts:
            ctx.partition = i % 2
        got, want = (_run(p, ctx, event, key) for p, ctx in zip((fused, steps), contexts, strict=True))
        assert got == want, (i, event)
        kinds.add("dropped" if got is None else got[0] if isinstance(got[0], str) else "processed")
        if isinstance(got, tuple) and isinstance(got[-1], list):
            kinds.update(a["kind"] for a in got[-1])
            kinds.update(f.partition(":")[0] for f in got[3])
    a, b = contexts
    assert a.stats == b.stats
    assert list(a.history.entries.items()) == list(b.history.entries.items())
    assert a.history.evicted == b.history.evicted > 0
    assert a.dedup.dirty() == b.dedup.dirty()
    # the generated events reached every branch of the chain
    wanted = {"processed", "dropped", "reject", "failed", "late", "unit_mismatch", "out_of_range", "rate",
              "stuck", "gap_opened", "device_state_lost"}
    assert wanted <= kinds


def test_only_the_exact_default_chain_is_fused() -> None:
    assert isinstance(build_pipeline(PipelineSettings()), FusedPipeline)
    for steps in (["validate", "dedup"],
                  ["validate", "dedup", "calibrate", "normalise", "derive", "route", "flag"],
                  ["validate", "dedup", "calibrate", "normalise", "derive", "flag", "route",
                   "tests.enricher.test_processing:boom"]):
        assert not isinstance(build_pipeline(PipelineSettings(steps=steps)), FusedPipeline)


def test_a_failing_builtin_step_is_named() -> None:
    """An integer no decoder lets through (a Python caller built the event): int / int overflows."""
    settings = PipelineSettings()
    devices = Devices({})
    for pipeline in (build_pipeline(settings), build_pipeline(settings, fuse=False)):
        ctx = Context(devices, DedupTable(), settings)
        event = Event("x", "d", 1, READING_TYPE, "2026-11-26T12:00:00Z",
                      {"temperature": {"v": 10**400, "u": "degF"}})
        with pytest.raises(StepFailed) as failed:
            pipeline.run(Item(event, "d"), ctx)
        assert failed.value.step == "normalise" and isinstance(failed.value.error, OverflowError)


@pytest.mark.parametrize("fuse", [True, False])
def test_no_derived_value_where_the_dew_point_has_none_and_the_reading_is_processed(fuse: bool) -> None:
    """Found by tests/e2e/test_fuzz.py: these valid readings made ``derive`` raise (the whole event
    dead-lettered as step_failed), or gave a NaN that orjson writes as null."""
    pipeline = build_pipeline(PipelineSettings(), fuse=fuse)
    for seq, (t, h) in enumerate([(-243.04, 50), (1e19, 100), (21, 5e-324), (1e308, 50), (21, 50)], 1):
        event = Event("x", "d", seq, READING_TYPE, "2026-11-26T12:00:00Z",
                      {"temperature": {"v": t, "u": "Cel"}, "humidity": {"v": h, "u": "%RH"}})
        out = pipeline.run(Item(event, "d"), Context(Devices({}), DedupTable(), PipelineSettings()))
        assert out is not None and out.readings["temperature"]["v"] == t
        assert out.derived == ({"dew_point": {"v": 10.181, "u": "Cel"}} if (t, h) == (21, 50) else {})


@pytest.mark.parametrize("fuse", [True, False])
def test_a_conversion_or_calibration_past_a_double_is_unencodable_not_null(fuse: bool) -> None:
    """Found by tests/e2e/test_fuzz.py: 1e308 kWh is inf J, which orjson writes as null: the processed
    event said ``"v": null``. Refused as unencodable instead, like an integer past 64 bits."""
    pipeline = build_pipeline(PipelineSettings(), fuse=fuse)
    devices = Devices({"cal": parse_device("cal", {"calibration": {"energy": {"scale": 10.0}}})})
    for device, reading in (("d", {"v": 1e308, "u": "kWh"}), ("d", {"v": -1e308, "u": "degF"}),
                            ("cal", {"v": 1e308})):
        event = Event("x", device, 1, READING_TYPE, "2026-11-26T12:00:00Z", {"energy": reading})
        with pytest.raises(Reject) as refused:
            pipeline.run(Item(event, device), Context(devices, DedupTable(), PipelineSettings()))
        assert refused.value.reason == "unencodable" and "energy" in str(refused.value)


@pytest.mark.parametrize("fuse", [True, False])
def test_a_type_of_known_types_is_deduplicated_and_passed_on_as_it_came(fuse: bool) -> None:
    """Schema evolution (docs/schema.md): a deployment's own type shares the device's seqs, so the
    enricher deduplicates it and counts it in the seq stream (no gap opens over it) but leaves it
    as it came; a type not listed is refused as unknown_type."""
    vibration = "com.example.vibration.v1"
    settings = PipelineSettings(known_types=[READING_TYPE, GAP_TYPE, vibration])
    pipeline = build_pipeline(settings, fuse=fuse)
    ctx = Context(Devices({}), DedupTable(), settings)
    reading = Event("r1", "d", 1, READING_TYPE, "2026-11-26T12:00:00Z", {"temperature": {"v": 21}})
    other = Event("v2", "d", 2, vibration, "2026-11-26T12:00:01Z", {"rms": [0.1, 0.4]},
                  extensions={"firmware": "2.0"})
    after = reading._replace(id="r3", seq=3)
    outs = [pipeline.run(Item(e, "d"), ctx) for e in (reading, other, other, after)]
    assert outs[2] is None and ctx.stats.duplicates == 1  # the same seq again: dropped
    passed = outs[1]
    assert passed is not None and passed.event == other and not passed.alerts
    assert outs[3] is not None and not outs[3].alerts  # seq 3 follows 2: no gap_opened
    strict = PipelineSettings()
    with pytest.raises(Reject) as refused:
        build_pipeline(strict, fuse=fuse).run(Item(other, "d"), Context(Devices({}), DedupTable(), strict))
    assert refused.value.reason == "unknown_type"
