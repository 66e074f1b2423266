"""The dashboard under a fleet: 500 devices at 1 event/s each, the page kept live.

What is measured (the issue's "done when": updates within 5 s; the server's CPU and RSS):

- a SQLite sink database holding the last hour of a fleet (``--devices`` x 3600 rows, written through
  the sink's own row layout) and, during the run, one new row per device per second, written in 200 ms
  batches as the sink writes them;
- ``edgebridge dashboard`` (a subprocess, ``--no-login``, Kafka pointed at a closed port: this measures
  the web side, the pipeline view is idle) with ``--clients`` open fleet pages (server-sent events);
- staleness: during the run every device's temperature is the row's seq, so each value written is
  unique; each client applies the stream's row updates as the page does and notes when it first holds
  each (device, value), against when the batch that wrote it was committed: every value on the page,
  not a probe's;
- the update interval: the time between two stream updates of a page;
- the dashboard's CPU (user+system from /proc, per second of the run) and its RSS (max);
- the clock starts when every page has had its first update: the first look reads the sink's hour
  (devices x 3600 rows), a start-up cost reported apart ("first page after start").

Baseline in the same run: the same with a 5-device fleet. The ratio is CPU(fleet) / CPU(5 devices).
Run alone: ``.venv/bin/python -m bench.dashboard_load [--devices 500 --clients 3 --seconds 60]``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from dashboard.readings import stamp
from edgebridge.topics import KafkaTopics
from enricher.sinks.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
_INSERT = ("INSERT OR IGNORE INTO readings (event_id, device_id, epoch, seq, time, site, location, late, "
           "flags, readings, derived, processed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")


def _row(device: int, seq: int, at: float, marked: bool = False) -> tuple[object, ...]:
    # marked (the measured rows): the value is the seq, an integer no prefilled row shows
    value = seq if marked else 20 + (seq % 50) / 10
    readings = (f'{{"temperature": {{"v": {value}, "u": "Cel"}}, '
                f'"humidity": {{"v": {40 + seq % 30}, "u": "%RH"}}}}')
    return (f"bench-{device:05d}-{seq}", f"bench-{device:05d}", "", seq, stamp(at), f"site-{device % 7}",
            f"hall {device % 13}", 0, "[]", readings, "{}", stamp(at))


def _prefill(db: Path, devices: int, now: float) -> int:
    SqliteStore(db).close()  # the sink's tables and indexes
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    seq = 3600
    for s in range(seq):
        conn.executemany(_INSERT, [_row(d, s + 1, now - 3600 + s) for d in range(devices)])
        if s % 600 == 599:
            conn.commit()
    conn.commit()
    conn.close()
    return seq


class _Client(threading.Thread):
    """One open fleet page: the stream's row updates, and when each (device, value) first showed."""

    pattern = re.compile(r'data-name="temperature"><i>temperature</i> <b>(\d+)</b>')

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[tuple[str, int], float] = {}
        self.arrivals: list[float] = []
        self.bytes = 0
        self.first = threading.Event()  # the page's first update (every row) arrived

    def run(self) -> None:
        with urllib.request.urlopen(self.url + "events?view=fleet", timeout=60) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    now = time.time()
                    self.first.set()
                    self.arrivals.append(now)
                    self.bytes += len(line)
                    for row in json.loads(line[6:]).get("rows", ()):
                        match = self.pattern.search(row.get("row", ""))
                        if match:
                            self.seen.setdefault((row["d"], int(match.group(1))), now)


def _behind(seen: dict[tuple[str, int], float], written: dict[tuple[str, int], float]) -> list[float]:
    """For every value written, how long until the page showed it or a newer value of its device (a
    value superseded before a look counts until its successor showed; never shown: not counted)."""
    by_device: dict[str, list[tuple[int, float]]] = {}
    for (device, value), when in seen.items():
        by_device.setdefault(device, []).append((value, when))
    writes: dict[str, list[tuple[int, float]]] = {}
    for (device, value), at in written.items():
        writes.setdefault(device, []).append((value, at))
    out = []
    for device, shown in by_device.items():
        shown.sort(reverse=True)
        first: list[tuple[int, float]] = []  # (value, the earliest time it or a newer one showed)
        earliest = float("inf")
        for value, when in shown:
            earliest = min(earliest, when)
            first.append((value, earliest))
        first.reverse()  # ascending values
        values = [v for v, _ in first]
        for value, at in writes.get(device, ()):
            i = bisect.bisect_left(values, value)
            if i < len(values):
                out.append(first[i][1] - at)
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """A server's CPU (user+system): its own, its live children's, and its reaped children's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(child[1]) == pid:
            ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _SqliteTable:
    """The SQLite sink's table: written as the sink writes it."""

    def __init__(self, workdir: Path, devices: int) -> None:
        self.db = workdir / f"sink-{devices}.db"
        self.conn: sqlite3.Connection | None = None

    def prefill(self, devices: int, now: float) -> int:
        return _prefill(self.db, devices, now)

    def env(self) -> dict[str, str]:
        return {"EDGEBRIDGE_SOURCES_SQLITE": str(self.db)}

    def write(self, rows: list[tuple[object, ...]]) -> None:
        if self.conn is None:
            self.conn = sqlite3.connect(self.db)
        self.conn.executemany(_INSERT, rows)
        self.conn.commit()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class _PostgresTable:
    """The PostgreSQL sink's tables (its own schema, :class:`enricher.sinks.postgres.PostgresStore`),
    in a schema of their own: rows and the sink's offsets written in one transaction, as the sink does."""

    _PG_INSERT = ("INSERT INTO readings (event_id, device_id, epoch, seq, time, site, location, late, flags, "
                  "readings, derived, processed_at) VALUES (%s, %s, %s, %s, %s::timestamptz, %s, %s, "
                  "%s::int::boolean, %s::jsonb, %s::jsonb, %s::jsonb, %s::timestamptz)")

    def __init__(self, server_dsn: str, devices: int) -> None:
        import psycopg

        from enricher.sinks.postgres import PostgresStore

        schema = f"bench_{devices}_{os.getpid()}"
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        self.dsn = f"{server_dsn} options='-c search_path={schema}'"
        PostgresStore(self.dsn).close()
        self.conn = psycopg.connect(self.dsn)
        self.offset = 0

    def prefill(self, devices: int, now: float) -> int:
        columns = ("event_id, device_id, epoch, seq, time, site, location, late, flags, readings, derived, "
                   "processed_at")
        with self.conn.transaction(), self.conn.cursor() as cur:
            with cur.copy(f"COPY readings ({columns}) FROM STDIN") as copy:
                for s in range(3600):
                    for d in range(devices):
                        copy.write_row(_row(d, s + 1, now - 3600 + s))
            cur.execute("ANALYZE readings")
        self.write([])
        return 3600

    def env(self) -> dict[str, str]:
        return {"EDGEBRIDGE_SOURCES_POSTGRES": self.dsn}

    def write(self, rows: list[tuple[object, ...]]) -> None:
        self.offset += len(rows) or 1
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(self._PG_INSERT, rows)
            # the processed topic's offsets: the ones the dashboard's version counts
            cur.execute("INSERT INTO sink_offsets VALUES (%s, 0, %s) ON CONFLICT (topic, partition) "
                        "DO UPDATE SET next_offset = excluded.next_offset",
                        [KafkaTopics().processed, self.offset])

    def close(self) -> None:
        self.conn.close()


def run(devices: int, clients: int, seconds: float, workdir: Path, pg_dsn: str | None = None,
        pg_pid: int | None = None) -> dict[str, float]:
    table: _SqliteTable | _PostgresTable = (_SqliteTable(workdir, devices) if pg_dsn is None
                                            else _PostgresTable(pg_dsn, devices))
    now = time.time()
    began = time.monotonic()
    seq = table.prefill(devices, now - seconds - 5)
    prefill = time.monotonic() - began
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    env.update({**table.env(), "EDGEBRIDGE_WEB_PORT": "0",
                "EDGEBRIDGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "EDGEBRIDGE_SOURCES_MQTT": "false",
                "EDGEBRIDGE_LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen([sys.executable, "-m", "edgebridge", "dashboard", "--no-login"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().split(" ", 1)[1].strip()
    readers = [_Client(url) for _ in range(clients)]
    started = time.monotonic()
    for r in readers:
        r.start()
    # steady state is measured: the first look reads the sink's hour (devices x 3600 rows), timed apart
    for r in readers:
        r.first.wait(300)
    first_page = time.monotonic() - started
    start_cpu = _cpu_seconds(proc.pid)  # imports, the sources' start, the first look at the hour
    written: dict[tuple[str, int], float] = {}
    rss = 0
    cpu0 = _cpu_seconds(proc.pid)
    # PostgreSQL's share (the dashboard's queries, and the writes standing for the sink's)
    server0 = _tree_cpu_seconds(pg_pid) if pg_pid else 0.0
    t0 = time.monotonic()
    try:
        tick = 0
        while time.monotonic() - t0 < seconds:
            # a second of the fleet in five 200 ms batches, as the sink commits them
            seq += 1
            for part in range(5):
                batch = range(part, devices, 5)
                table.write([_row(d, seq, time.time(), marked=True) for d in batch])
                committed = time.time()
                written.update({(f"bench-{d:05d}", seq): committed for d in batch})
                time.sleep(max(0.0, t0 + tick * 0.2 + 0.2 - time.monotonic()))
                tick += 1
            rss = max(rss, _rss_kb(proc.pid))
        cpu = _cpu_seconds(proc.pid) - cpu0
        server_cpu = _tree_cpu_seconds(pg_pid) - server0 if pg_pid else float("nan")
        elapsed = time.monotonic() - t0
        stopped = time.time()
    finally:
        table.close()
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
    # a value written in the last second may not have had its look yet: judged only up to then
    judged = {k: w for k, w in written.items() if w < stopped - 2}
    lags = sorted(r.seen[k] - w for r in readers for k, w in judged.items() if k in r.seen)
    missed = sum(1 for r in readers for k in judged if k not in r.seen)
    behind = sorted(_behind(r.seen, judged))
    gaps = sorted(b - a for r in readers for a, b in zip(r.arrivals[1:], r.arrivals[2:], strict=False))
    return {"devices": devices, "prefill_s": prefill, "first_page_s": first_page, "start_cpu_s": start_cpu,
            "cpu_per_s": cpu / elapsed,
            "rss_mb": rss / 1024, "server_cpu_per_s": server_cpu / elapsed,
            "behind_p95": behind[int(0.95 * (len(behind) - 1))] if behind else float("nan"),
            "behind_max": behind[-1] if behind else float("nan"),
            "gap_p50": statistics.median(gaps) if gaps else float("nan"),
            "gap_max": gaps[-1] if gaps else float("nan"),
            "kb_per_s": sum(r.bytes for r in readers) / len(readers) / elapsed / 1024,
            "lag_p50": statistics.median(lags) if lags else float("nan"),
            "lag_p95": lags[int(0.95 * (len(lags) - 1))] if lags else float("nan"),
            "lag_max": lags[-1] if lags else float("nan"), "missed": missed, "shown": len(lags),
            "updates": sum(len(r.arrivals) for r in readers)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.dashboard_load", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--source", choices=("sqlite", "postgres"), default="sqlite",
                        help="the sink the dashboard reads (postgres: a throwaway server started here)")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        if args.source == "sqlite":
            results = [run(n, args.clients, args.seconds, Path(tmp)) for n in (5, args.devices)]
        else:
            from edgebridge.devbrokers.postgres import Postgres

            Path(tmp).chmod(0o755)  # the server runs as the postgres user when we are root
            server = Postgres(Path(tmp) / "postgres")
            server.start()
            try:
                results = [run(n, args.clients, args.seconds, Path(tmp), server.dsn, server.pid)
                           for n in (5, args.devices)]
            finally:
                server.stop()
    print(f"source: {args.source}")
    print(f"cores {os.cpu_count()}, load average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f} "
          f"(1 min), {os.getloadavg()[1]:.1f} (5 min); {args.clients} open pages, {args.seconds:.0f} s each; "
          "refresh 1 s")
    print("| devices | rows in the hour | dashboard CPU (s per s) | RSS max (MB) | "
          "value written -> on the page p50 / p95 / max (s) | values superseded before a look | "
          "page behind the data p95 / max (s) | "
          "update interval p50 / max (s) | "
          "stream KB/s per page | stream updates | first page after start: wall / CPU (s) |")
    for r in results:
        print(f"| {r['devices']:.0f} | {r['devices'] * 3600:.0f} | {r['cpu_per_s']:.3f} | "
              f"{r['rss_mb']:.0f} | {r['lag_p50']:.2f} / {r['lag_p95']:.2f} / {r['lag_max']:.2f} | "
              f"{r['missed']:.0f} of {r['missed'] + r['shown']:.0f} | "
              f"{r['behind_p95']:.2f} / {r['behind_max']:.2f} | "
              f"{r['gap_p50']:.2f} / {r['gap_max']:.2f} | "
              f"{r['kb_per_s']:.0f} | {r['updates']:.0f} | "
              f"{r['first_page_s']:.1f} / {r['start_cpu_s']:.1f} |")
    if args.source == "postgres":
        print("PostgreSQL server CPU (s per s; its queries for the dashboard and the rows written): "
              + ", ".join(f"{r['devices']:.0f} devices {r['server_cpu_per_s']:.3f}" for r in results))
    base, fleet = results
    ratio = fleet["cpu_per_s"] / base["cpu_per_s"]
    print(f"CPU ratio {fleet['devices']:.0f} devices / 5 devices: {ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
