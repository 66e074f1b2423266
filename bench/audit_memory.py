"""`edgebridge audit`'s memory and time over a large topic, against a naive audit in the same run.

A Kafka of the run's own gets a topic of ``--events`` events of ``--devices`` devices (in seq order per
device, ~1 % of seqs never sent, a re-send every 50 events), then each of three child processes reads
it whole, one at a time, alternating over ``--repeats`` rounds:

- ``ours``: ``python -m edgebridge audit --topic T --json`` exactly as an operator runs it (run-length
  seq sets per device and epoch, :mod:`edgebridge.ops.tally`);
- ``naive``: the same reader (:func:`edgebridge.ops.reading.read`), the same decoder, but every seq kept
  in a Python set per (device, epoch), holes by set difference: what the simulators' audit did;
- ``floor``: the same reader and decoder, nothing kept: the interpreter, confluent-kafka and the
  reader's own buffers, which no audit can go under.

Peak RSS of each child is its ``VmHWM`` read at its exit (a launcher's ``atexit``): ``ru_maxrss`` from
``wait4`` would not do, a forked child inherits its parent's high-water mark across ``exec``, and the
parent holds the generated records. Wall time from start to exit; each
child's figures are checked (ours and naive must find the same holes and duplicates). Medians and the
ratio ours/naive are printed.

    .venv/bin/python -m bench.audit_memory --events 1000000 --devices 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import orjson
from confluent_kafka.admin import AdminClient

from bench.enricher_throughput import create, fill
from edgebridge.devbrokers import LocalBrokers
from edgebridge.ops.tally import Tally, decode

ROOT = Path(__file__).resolve().parents[1]
EPOCH = "0f3a9c2e7b1d4a60"


def events(n: int, devices: int) -> tuple[list[tuple[bytes, bytes]], int, int]:
    """``n`` records round-robin over the devices; returns them, the holes (seqs left out below a
    device's highest) and the re-sends."""
    out: list[tuple[bytes, bytes]] = []
    resends = i = 0
    top: dict[int, int] = {}
    sent: dict[int, int] = {}
    uid = uuid.uuid4().hex[:20]
    while len(out) < n:
        d, seq = i % devices, i // devices + 1
        i += 1
        if (seq * 7 + d) % 100 == 0:  # a seq that never arrives
            continue
        top[d], sent[d] = seq, sent.get(d, 0) + 1
        dev = f"dev-{d:05d}"
        out.append((dev.encode(), orjson.dumps({
            "specversion": "1.0", "id": f"{uid}-{i:012d}", "source": f"/devices/{dev}",
            "type": "edgebridge.reading.processed.v1", "deviceid": dev, "seq": seq, "epoch": EPOCH,
            "time": f"2026-12-06T{seq // 3600 % 24:02d}:{seq // 60 % 60:02d}:{seq % 60:02d}.000Z",
            "data": {"temperature": {"v": 20 + (i % 300) / 10, "u": "Cel"}}})))
        if len(out) % 50 == 0 and len(out) < n:
            out.append(out[-1])
            resends += 1
    return out, sum(top[d] - sent[d] for d in top), resends


# The naive audit and the floor: one small program, given the mode; the reader is the operator tools'.
CHILD = """
import json, sys, orjson
from edgebridge.ops.reading import Position, read
from edgebridge.ops.tally import decode
mode, bootstrap, topic = sys.argv[1:4]
seen, records, dups = {}, 0, 0
for r in read({"bootstrap.servers": bootstrap}, topic, Position("beginning")):
    event = decode(r.value)
    records += 1
    if mode == "floor" or event is None:
        continue
    seqs = seen.setdefault((event.device, event.epoch), set())
    dups += event.seq in seqs
    seqs.add(event.seq)
missing = sum(max(s) - len(s) for s in seen.values())
print(json.dumps({"records": records, "duplicates": dups, "missing": missing}))
"""


# Runs a module (``module edgebridge audit ...``) or a program (``code SOURCE args``) and reports the
# process's peak RSS (VmHWM, kB) on stderr as it exits, whatever its exit status.
LAUNCH = """
import atexit, sys
def _peak():
    with open('/proc/self/status') as f:
        hwm = [line.split()[1] for line in f if line.startswith('VmHWM:')][0]
    sys.stderr.write(f'\\npeak_kb {hwm}\\n')
atexit.register(_peak)
kind, target = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
if kind == 'module':
    import runpy
    runpy.run_module(target, run_name='__main__', alter_sys=True)
else:
    exec(compile(target, '<child>', 'exec'), {'__name__': '__main__'})
"""


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, int, dict[str, int]]:
    """(seconds, peak RSS in kB, the figures it printed) of ``LAUNCH args``."""
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", LAUNCH, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=3600)
    seconds = time.monotonic() - began
    if proc.returncode not in (0, 1):  # the audit exits 1: the topic has holes, on purpose
        raise SystemExit(f"{args[:4]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    peak = int(proc.stderr.rsplit("peak_kb ", 1)[1].split()[0])
    doc = json.loads(proc.stdout)
    figures = doc.get("totals", doc)
    return seconds, peak, {k: figures[k] for k in ("records", "duplicates", "missing")}


def state_bytes(records: list[tuple[bytes, bytes]]) -> dict[str, int]:
    """The bytes each audit keeps once the records are read (tracemalloc, in this process, no Kafka):
    the audit's state alone, without the interpreter and the reader that RSS includes."""
    out = {}
    for name in ("ours", "naive"):
        tracemalloc.start()
        if name == "ours":
            tally = Tally()
            for _, value in records:
                tally.add_value(value)
            tally.report()
        else:
            seen: dict[tuple[str, str], set[int]] = {}
            for _, value in records:
                event = decode(value)
                if event is not None:
                    seen.setdefault((event.device, event.epoch), set()).add(event.seq)
        out[name] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        tally, seen = Tally(), {}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        brokers = LocalBrokers(Path(tmp) / "brokers", only=("kafka",))
        brokers.up()
        try:
            bs = brokers.kafka.bootstrap
            topic = f"bench-audit-{uuid.uuid4().hex[:6]}"
            create(AdminClient({"bootstrap.servers": bs}), [(topic, args.partitions, {})])
            records, holes, resends = events(args.events, args.devices)
            began = time.monotonic()
            fill(bs, topic, records)
            print(f"filled {topic}: {args.events} records of {args.devices} devices, {args.partitions} "
                  f"partitions ({holes} seqs left out, {resends} re-sends) in "
                  f"{time.monotonic() - began:.1f} s", flush=True)
            state = state_bytes(records)
            print(f"state kept after reading (tracemalloc): ours {state['ours']:,} B, naive "
                  f"{state['naive']:,} B, ratio {state['ours'] / state['naive']:.3f}", flush=True)
            del records
            env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
            env["EDGEBRIDGE_KAFKA_BOOTSTRAP"] = bs
            cmds = {
                "ours": ["module", "edgebridge", "audit", "--topic", topic, "--json"],
                "naive": ["code", CHILD, "naive", bs, topic],
                "floor": ["code", CHILD, "floor", bs, topic],
            }
            runs: dict[str, list[tuple[float, int]]] = {name: [] for name in cmds}
            for r in range(args.repeats):
                for name, cmd in cmds.items():
                    seconds, rss, figures = run_child(cmd, env)
                    runs[name].append((seconds, rss))
                    print(f"  round {r + 1} {name:<5}: {seconds:6.1f} s, peak RSS {rss:>9,} kB, {figures}",
                          flush=True)
                    assert figures["records"] == args.events, figures
                    if name != "floor":
                        assert (figures["duplicates"], figures["missing"]) == (resends, holes), figures
        finally:
            brokers.down()
    med = {name: (statistics.median(s for s, _ in v), int(statistics.median(m for _, m in v)))
           for name, v in runs.items()}
    print(f"\nmedians of {args.repeats} ({args.events} events, {args.devices} devices, "
          f"{os.cpu_count()} cores):")
    for name, (seconds, rss) in med.items():
        print(f"  {name:<5} {seconds:6.1f} s  {args.events / seconds:>9,.0f} ev/s  peak RSS {rss:>9,} kB "
              f"(above the floor: {rss - med['floor'][1]:,} kB)")
    (ts, tr), (ns, nr), (_, fr) = med["ours"], med["naive"], med["floor"]
    print(f"ratio ours/naive: peak RSS {tr / nr:.2f}, above the floor {(tr - fr) / max(nr - fr, 1):.3f}, "
          f"time {ts / ns:.2f}")


if __name__ == "__main__":
    main()
