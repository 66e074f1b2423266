"""The baseline of ``bench/enricher_throughput.py``: the enricher's enrichment written with Quix Streams.

Runs in its own virtualenv (``bench/.venv-quix``: Quix pins its own confluent-kafka), so it imports
nothing of edgebridge. Exactly-once (``processing_guarantee="exactly-once"``): Kafka transactions, the
dedup state in Quix's RocksDB store with its changelog topic, offsets committed in the transaction.
The same steps as ours: validate (type, key = device), dedup (per device: highest contiguous seq plus
the seen seqs above it), registry join, calibrate, normalise units (degF/K -> Cel, hPa/kPa -> Pa),
derive the dew point, flag out-of-range and stuck values, the processed envelope. Runs until SIGTERM.

    bench/.venv-quix/bin/python bench/enricher_quix_app.py --bootstrap HOST:PORT --raw T --out T \
        --group G --registry devices.json --state-dir DIR [--commit-interval 0.1]
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from typing import Any

from quixstreams import Application, State

PROCESSED = "edgebridge.reading.processed.v1"
TO_CELSIUS = {"degF": lambda v: (v - 32) * 5 / 9, "K": lambda v: v - 273.15}
TO_PA = {"hPa": 100.0, "kPa": 1000.0, "mbar": 100.0}


def dedup(event: dict[str, Any], state: State) -> bool:
    seq = event["seq"]
    high = state.get("high", 0)
    seen: list[int] = state.get("seen", [])
    if seq <= high or seq in seen:
        return False
    seen.append(seq)
    seen.sort()
    while seen and seen[0] == high + 1:
        high = seen.pop(0)
    state.set("high", high)
    state.set("seen", seen)
    return True


def make_enrich(registry: dict[str, dict[str, Any]], stuck_count: int = 10) -> Any:
    history: dict[tuple[str, str], tuple[Any, int]] = {}

    def enrich(event: dict[str, Any], key: str, timestamp: int, headers: Any) -> dict[str, Any]:
        if event.get("type") != "edgebridge.reading.v1" or key != event["deviceid"]:
            raise ValueError("not a reading of this key")
        device = registry.get(event["deviceid"])
        readings = {n: dict(r) for n, r in event["data"].items()}
        flags: list[str] = []
        calibration = device.get("calibration", {}) if device else {}
        thresholds = device.get("thresholds", {}) if device else {}
        for name, cal in calibration.items():
            r = readings.get(name)
            if r is not None and isinstance(r["v"], int | float):
                r["raw"] = r["v"]
                r["v"] = r["v"] * cal.get("scale", 1.0) + cal.get("offset", 0.0)
                r["calibrated"] = True
        for r in readings.values():
            u = r.get("u")
            if u in TO_CELSIUS:
                r.setdefault("raw", r["v"])
                r["raw_u"], r["v"], r["u"] = u, TO_CELSIUS[u](r["v"]), "Cel"
            elif u in TO_PA:
                r.setdefault("raw", r["v"])
                r["raw_u"], r["v"], r["u"] = u, r["v"] * TO_PA[u], "Pa"
        derived = {}
        t, h = readings.get("temperature"), readings.get("humidity")
        if t and h and t["u"] == "Cel" and h["u"] == "%RH" and 0 < h["v"] <= 100:
            g = math.log(h["v"] / 100.0) + 17.625 * t["v"] / (243.04 + t["v"])
            derived["dew_point"] = {"v": round(243.04 * g / (17.625 - g), 3), "u": "Cel"}
        for name, r in readings.items():
            limits = thresholds.get(name, {})
            if ("min" in limits and r["v"] < limits["min"]) or ("max" in limits and r["v"] > limits["max"]):
                flags.append(f"out_of_range:{name}")
            previous = history.get((key, name))
            repeats = previous[1] + 1 if previous and previous[0] == r["v"] else 1
            history[(key, name)] = (r["v"], repeats)
            if repeats >= stuck_count:
                flags.append(f"stuck:{name}")
        info = {k: device[k] for k in ("name", "site", "location", "model") if device and k in device}
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        ingest = datetime.fromtimestamp(timestamp / 1000, UTC).isoformat(timespec="milliseconds")
        return {**{k: v for k, v in event.items() if k != "data"}, "type": PROCESSED,
                "data": {"readings": readings, "derived": derived, "flags": flags, "late": False,
                         "device": {"registered": device is not None, **info},
                         "ingesttime": ingest.replace("+00:00", "Z"), "processtime": now}}

    return enrich


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("bootstrap", "raw", "out", "group", "registry", "state-dir"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--commit-interval", type=float, default=0.1)
    args = parser.parse_args()
    with open(args.registry) as f:
        registry = json.load(f)
    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      processing_guarantee="exactly-once", commit_interval=args.commit_interval,
                      state_dir=args.state_dir, loglevel="WARNING")
    raw = app.topic(args.raw, value_deserializer="json", key_deserializer="str")
    out = app.topic(args.out, value_serializer="json", key_serializer="str")
    sdf = app.dataframe(raw)
    sdf = sdf.filter(dedup, stateful=True)
    sdf = sdf.apply(make_enrich(registry), metadata=True)
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
