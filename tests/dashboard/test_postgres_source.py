"""The dashboard reading the PostgreSQL sink's table: a real PostgreSQL (the session's), the sink's own
schema (:class:`enricher.sinks.postgres.PostgresStore` creates it), rows in the sink's layout, and
``edgebridge dashboard`` as a subprocess with ``[sources] postgres``. What the pages show is compared
with the rows the test wrote; a row added later shows without a restart, and so does a device's
backlog of old device times committed after the first look, in its sparkline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from edgebridge.topics import KafkaTopics
from tests.dashboard.conftest import aggregate_records, figures_expected, figures_shown, write_aggregates
from tests.dashboard.test_serve import BASE_ENV, OFFLINE, ROOT
from tests.waiting import wait_for

D1 = (21.5, 23.0, 22.1, 24.6, 23.8, 25.2)


@pytest.fixture
def dsn(postgres: Any) -> str:
    import psycopg

    schema = f"dash_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{postgres.dsn} options='-c search_path={schema}'"


PROCESSED = KafkaTopics().processed  # the topic whose offsets the dashboard's version counts


def _insert(dsn: str, device: str, seq: int, at: float, temperature: float, conn: Any = None,
            partition: int = 0) -> None:
    """A row as the sink writes it, and its partition's offset in the same transaction (what the
    dashboard's version follows); in ``conn``'s open transaction when given."""
    import psycopg
    from psycopg.types.json import Jsonb

    if conn is None:
        with psycopg.connect(dsn) as own, own.transaction():
            _insert(dsn, device, seq, at, temperature, own, partition)
        return
    conn.execute(
        "INSERT INTO readings (event_id, device_id, epoch, seq, time, site, location, late, flags, "
        "readings, derived, processed_at) "
        "VALUES (%s, %s, '', %s, %s, 'plant-a', 'hall 1', false, %s, %s, %s, now())",
        [uuid.uuid4().hex, device, seq, datetime.fromtimestamp(at, UTC), Jsonb([]),
         Jsonb({"temperature": {"v": temperature, "u": "Cel"}}), Jsonb({})])
    conn.execute("INSERT INTO sink_offsets VALUES (%s, %s, 1) ON CONFLICT (topic, partition) "
                 "DO UPDATE SET next_offset = sink_offsets.next_offset + 1", [PROCESSED, partition])


@contextmanager
def _dashboard(dsn: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "edgebridge", "dashboard", "--no-login"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**BASE_ENV, **OFFLINE, "EDGEBRIDGE_SOURCES_POSTGRES": dsn,
                                 "EDGEBRIDGE_SOURCES_REFRESH": "0.5"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("dashboard: "), line
        yield line.split(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def _fleet(url: str) -> dict[str, Any]:
    return {row["device_id"]: row for row in json.loads(_get(url + "api/fleet"))}


def test_the_fleet_and_a_device_chart_read_from_the_postgresql_sink(dsn: str) -> None:
    from enricher.sinks.postgres import PostgresStore

    PostgresStore(dsn).conn.close()  # the sink's schema, as `edgebridge sink postgres` creates it
    now = time.time()
    for i, t in enumerate(D1):  # every 5 minutes, 50 to 25 minutes ago: six closed minutes
        _insert(dsn, "pg-1", i + 1, now - 3000 + i * 300, t)
    _insert(dsn, "pg-2", 1, now, 12.5)
    with _dashboard(dsn) as url:
        fleet = _fleet(url)
        assert fleet["pg-1"]["readings"]["temperature"] == [25.2, "Cel"]
        assert fleet["pg-2"]["readings"]["temperature"] == [12.5, "Cel"]
        page = _get(url)
        spark = re.search(r'data-device="pg-1".*?<polyline [^>]*points="([^"]+)"', page)
        assert spark is not None and len(spark.group(1).split()) == 6
        chart = _get(url + "device/pg-1?range=1h")
        assert [float(v) for v in re.findall(r'data-v="([^"]+)"', chart)] == list(D1)
        # a row the sink adds later: on the page without a restart
        _insert(dsn, "pg-2", 2, time.time(), 99.5)
        wait_for(lambda: _fleet(url)["pg-2"]["readings"]["temperature"] == [99.5, "Cel"], 30,
                 "the new row")


def test_the_postgresql_session_is_read_only_and_a_dsn_with_a_password_is_refused(dsn: str) -> None:
    import psycopg

    from dashboard.readings_pg import PostgresReadings
    from enricher.sinks.postgres import PostgresStore

    PostgresStore(dsn).conn.close()
    db = PostgresReadings(dsn)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            db.conn.execute("DELETE FROM readings")
    finally:
        db.close()
    env = {**BASE_ENV, **OFFLINE, "EDGEBRIDGE_SOURCES_POSTGRES": "host=x password=secret"}
    done = subprocess.run([sys.executable, "-m", "edgebridge", "dashboard", "--no-login"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "holds a password" in done.stderr and "secret" not in done.stderr


def _temperatures(recent: Any, device: str, now: float) -> list[float]:
    return [p.values["temperature"] for p in recent.closed_minutes(device, now)]


def test_a_device_back_from_ten_minutes_offline_fills_its_sparkline_without_a_restart(dsn: str) -> None:
    from enricher.sinks.postgres import PostgresStore

    PostgresStore(dsn).conn.close()
    now = time.time()
    _insert(dsn, "pg-1", 1, now - 1800, 20.0)
    _insert(dsn, "pg-1", 2, now - 1740, 20.5)
    _insert(dsn, "pg-2", 1, now - 1800, 5.0)
    with _dashboard(dsn) as url:
        def spark(device: str) -> int:
            found = re.search(rf'data-device="{device}".*?<polyline [^>]*points="([^"]+)"', _get(url))
            return len(found.group(1).split()) if found else 0

        assert spark("pg-1") == 2
        # its backlog, committed now: a row a minute, 10 to 6 minutes ago (device times)
        for i in range(5):
            _insert(dsn, "pg-1", i + 3, now - 600 + i * 60, 30.0 + i)
        wait_for(lambda: spark("pg-1") == 7, 30, "the backlog in pg-1's sparkline")


def test_rows_are_followed_by_commit_whatever_their_device_time_and_commit_order(dsn: str) -> None:
    import psycopg

    from dashboard.readings_pg import PostgresReadings
    from dashboard.recent import START_OVER_AFTER
    from enricher.sinks.postgres import PostgresStore

    PostgresStore(dsn).conn.close()
    now = time.time()
    _insert(dsn, "pg-1", 1, now - 1800, 20.0)
    db = PostgresReadings(dsn)
    try:
        recent = db.recent()
        recent.refresh()
        assert _temperatures(recent, "pg-1", now) == [20.0]
        # a transaction that started writing before the look, and commits after another one did
        with psycopg.connect(dsn) as slow:
            # 10 minutes old: a device back from offline; another partition (as another sink would)
            _insert(dsn, "pg-1", 2, now - 600, 21.0, slow, partition=1)
            _insert(dsn, "pg-1", 3, now - 540, 22.0)
            recent.refresh()
            assert _temperatures(recent, "pg-1", now) == [20.0, 22.0]
            slow.commit()
        recent.refresh()
        assert _temperatures(recent, "pg-1", now) == [20.0, 21.0, 22.0]
        # per minute the newest device time wins, whatever the order of the commits
        _insert(dsn, "pg-1", 4, now - 600 - 1, 99.0)
        recent.refresh()
        assert _temperatures(recent, "pg-1", now) == [20.0, 21.0, 22.0]
        assert recent.latest_rows()["pg-1"].readings["temperature"]["v"] == 22.0
        # a look with nothing new reads nothing, and the version counts the processed topic's offsets only
        recent.refresh()
        assert _temperatures(recent, "pg-1", now) == [20.0, 21.0, 22.0]
        version = db.version()
        with psycopg.connect(dsn) as conn:
            conn.execute("INSERT INTO sink_offsets VALUES ('iot.aggregates', 0, 1000)")
        assert db.version() == version == 4
        # after a pause longer than START_OVER_AFTER the look starts over (reads by index) and tells
        # the device's new newest row apart from the one held
        changed = recent.changed["pg-1"]
        _insert(dsn, "pg-1", 5, now - 480, 23.0)
        recent._looked_at -= START_OVER_AFTER + 1
        recent.refresh()
        assert _temperatures(recent, "pg-1", now) == [20.0, 21.0, 22.0, 23.0]
        assert recent.latest_rows()["pg-1"].readings["temperature"]["v"] == 23.0
        assert recent.changed["pg-1"] != changed
    finally:
        db.close()


def test_a_database_of_an_older_sink_is_brought_up_to_date_and_read_meanwhile(dsn: str) -> None:
    import psycopg

    from dashboard.readings_pg import PostgresReadings
    from enricher.sinks.postgres import PostgresStore

    PostgresStore(dsn).conn.close()
    with psycopg.connect(dsn, autocommit=True) as conn:  # as a sink older than commit_tx left it
        conn.execute("DROP INDEX readings_commit_tx")
        conn.execute("ALTER TABLE readings DROP COLUMN commit_tx")
    now = time.time()
    _insert(dsn, "pg-1", 1, now - 1800, 20.0)
    db = PostgresReadings(dsn)
    try:
        recent = db.recent()
        recent.refresh()  # no commit_tx: each device's newest row read again, the hour each minute
        assert _temperatures(recent, "pg-1", now) == [20.0]
        _insert(dsn, "pg-1", 2, now - 600, 21.0)
        recent.refresh()
        assert recent.latest_rows()["pg-1"].readings["temperature"]["v"] == 21.0
        recent._minute = int(now // 60) - 1  # as if the look before had been in the previous minute
        recent.refresh()
        assert _temperatures(recent, "pg-1", now) == [20.0, 21.0]
    finally:
        db.close()
    PostgresStore(dsn).conn.close()  # the newer sink starts: the column, its default, its index
    _insert(dsn, "pg-1", 3, now - 540, 22.0)
    with psycopg.connect(dsn) as conn:
        txs = conn.execute("SELECT seq, commit_tx IS NULL FROM readings ORDER BY seq").fetchall()
    assert txs == [(1, True), (2, True), (3, False)]
    db = PostgresReadings(dsn)
    try:
        recent = db.recent()
        recent.refresh()
        _insert(dsn, "pg-1", 4, now - 480, 23.0)
        recent.refresh()
        assert _temperatures(recent, "pg-1", now) == [20.0, 21.0, 22.0, 23.0]
    finally:
        db.close()


def test_per_minute_keeps_each_devices_newest_row_of_each_minute_in_the_range(dsn: str) -> None:
    from dashboard.readings_pg import PostgresReadings
    from enricher.sinks.postgres import PostgresStore

    PostgresStore(dsn).conn.close()
    base = (time.time() // 3600 - 2) * 3600  # a whole hour, two hours ago
    # pg-1: minutes 0 (3 rows), 1 (1), 5 (2); pg-2: minute 1 (2 rows); before the range: one row
    for device, seq, second, t in (("pg-1", 1, 5, 1.0), ("pg-1", 2, 50, 2.0), ("pg-1", 3, 30, 3.0),
                                   ("pg-1", 4, 70, 4.0), ("pg-1", 5, 301, 5.0), ("pg-1", 6, 359, 6.0),
                                   ("pg-2", 1, 61, 7.0), ("pg-2", 2, 62, 8.0), ("pg-1", 7, -1, 0.0)):
        _insert(dsn, device, seq, base + second, t)
    db = PostgresReadings(dsn)
    try:
        def values(**kwargs: Any) -> dict[str, list[float]]:
            return {d: [p.values["temperature"] for p in points]
                    for d, points in db.series(base, per_minute=True, **kwargs).items()}

        assert values() == {"pg-1": [2.0, 4.0, 6.0], "pg-2": [8.0]}
        assert values(device="pg-1") == {"pg-1": [2.0, 4.0, 6.0]}
        assert values(until=base + 330) == {"pg-1": [2.0, 4.0, 5.0], "pg-2": [8.0]}
        assert values(limit=2) == {"pg-1": [4.0, 6.0]}  # the newest rows kept
    finally:
        db.close()


def aggregates_in(page: str) -> list[dict[str, Any]]:
    """The aggregates table of a device page's HTML, as :func:`tests.dashboard.conftest.figures_shown`."""
    rows = re.findall(r'<tr data-measurement="[^"]+" data-start="([^"]+)">(.*?)</tr>', page)
    return figures_shown([(start, re.findall(r"<td[^>]*>(.*?)</td>", cells)) for start, cells in rows])


def test_the_device_page_shows_the_aggregates_the_sink_wrote_or_says_it_has_none(dsn: str) -> None:
    import psycopg

    from dashboard.aggregates import MISSING
    from enricher.sinks.postgres import PostgresStore

    store = PostgresStore(dsn)  # the sink's schema and its store's upsert
    records, expected = aggregate_records("pg-1", "temperature", "Cel", time.time(), too_late=3, ahead=0)
    write_aggregates(store, "aggregates", records)
    store.conn.close()
    with _dashboard(dsn) as url:
        page = _get(url + "device/pg-1?range=1h")
        assert aggregates_in(page) == figures_expected(expected, 60)
        bands = [{"min": float(lo), "max": float(hi)} for lo, hi in
                 re.findall(r'<rect [^>]*data-min="([^"]+)" data-max="([^"]+)"', page)]
        assert bands == [{"min": e["min"], "max": e["max"]} for e in reversed(figures_expected(expected, 60))]
        assert re.search(r'data-kind="too_late">temperature: <b>3</b>', page)
        assert 'data-kind="ahead"' not in page  # a zero count is not shown
        # the 6h range reaches the window of two hours ago
        assert aggregates_in(_get(url + "device/pg-1?range=6h")) == figures_expected(expected, 360)
        # a database without the table (a sink older than the aggregates): one line, the rest of the page
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE aggregates")
        wait_for(lambda: MISSING in _get(url + "device/pg-1?range=1h"), 30, "the note")
        assert "no readings in this range" in _get(url + "device/pg-1?range=1h")
