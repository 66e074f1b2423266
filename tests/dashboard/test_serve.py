"""``edgebridge dashboard`` as a command: what it refuses to start with, TLS, and its pure parts.

No broker is needed: Kafka is pointed at a closed port (the pipeline view then shows the error) and
the status topic is not followed, so these run anywhere.
"""

from __future__ import annotations

import os
import sqlite3
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dashboard.auth import Login
from dashboard.readings import ReadingsDb
from dashboard.svg import chart, sparkline
from edgebridge.secret import Secret

ROOT = Path(__file__).resolve().parents[2]
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
OFFLINE = {"EDGEBRIDGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "EDGEBRIDGE_SOURCES_MQTT": "false",
           "EDGEBRIDGE_WEB_PORT": "0"}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgebridge", "dashboard", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**BASE_ENV, **OFFLINE, **env})


@contextmanager
def _serving(env: dict[str, str], *args: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "edgebridge", "dashboard", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**BASE_ENV, **OFFLINE, **env})
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


def _get(url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
         ) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30,
                                    context=context) as response:
            return int(response.status), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers)


def test_without_a_token_it_refuses_to_start_and_says_how() -> None:
    result = _run({})
    assert result.returncode == 2
    assert "web.token" in result.stderr and "token_file" in result.stderr


def test_no_login_is_refused_off_loopback(tmp_path: Path) -> None:
    result = _run({"EDGEBRIDGE_WEB_HOST": "0.0.0.0"}, "--no-login")
    assert result.returncode == 2
    assert "only on a loopback address" in result.stderr


def test_an_empty_token_file_and_a_missing_database_are_configuration_errors(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = _run({"EDGEBRIDGE_WEB_TOKEN_FILE": str(empty)})
    assert result.returncode == 2 and "is empty" in result.stderr
    result = _run({"EDGEBRIDGE_WEB_TOKEN": "t", "EDGEBRIDGE_SOURCES_SQLITE": str(tmp_path / "none.db")})
    assert result.returncode == 2 and "no such database" in result.stderr


def test_no_login_on_loopback_serves_without_a_credential() -> None:
    with _serving({}, "--no-login") as url:
        assert url.startswith("http://127.0.0.1:")
        assert _get(url)[0] == 200
        assert _get(url + "pipeline")[0] == 200


def test_with_a_certificate_it_serves_https_only_and_the_cookie_is_secure(tmp_path: Path) -> None:
    from edgebridge.devbrokers.tls import ensure_certs

    certs = ensure_certs(tmp_path / "pki")
    env = {"EDGEBRIDGE_WEB_TOKEN": "sesame", "EDGEBRIDGE_WEB_CERT_FILE": str(certs.server_cert),
           "EDGEBRIDGE_WEB_KEY_FILE": str(certs.server_key)}
    trust = ssl.create_default_context(cafile=str(certs.ca_cert))
    with _serving(env) as url:
        assert url.startswith("https://127.0.0.1:")
        assert _get(url, context=trust)[0] == 401
        assert _get(url, {"Authorization": "Bearer sesame"}, context=trust)[0] == 200
        request = urllib.request.Request(url + "login", data=b"token=sesame")
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=trust),
                                             _NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(request, timeout=30)
        assert redirect.value.code == 303
        cookie = redirect.value.headers["set-cookie"]
        redirect.value.close()
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "sesame" not in cookie
        with pytest.raises(OSError):  # plain HTTP on the TLS port: refused or cut, never served
            urllib.request.urlopen(url.replace("https://", "http://"), timeout=10)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_login_takes_the_token_as_bearer_basic_or_cookie_and_nothing_else() -> None:
    import base64

    login = Login(Secret("tok"), secure_cookie=False)
    cookie = login.cookie_header().split(";")[0]
    assert login.allowed({"authorization": "Bearer tok"})
    assert login.allowed({"authorization": "Basic " + base64.b64encode(b"anyone:tok").decode()})
    assert login.allowed({"cookie": cookie})
    for headers in ({}, {"authorization": "Bearer tok2"}, {"authorization": "Basic !!!"},
                    {"authorization": "Basic " + base64.b64encode(b"tok:").decode()},
                    {"cookie": "edgebridge_dashboard=tok"}, {"cookie": "\x00;;=="}):
        assert not login.allowed(headers), headers
    assert Login(None, secure_cookie=False).allowed({})


def test_charts_of_nothing_and_of_one_point_are_drawn_not_raised() -> None:
    assert "no readings in this range" in chart({}, {})
    assert "no readings in this range" in chart({"t": []}, {})
    one = chart({"t": [(1.0, 5.0)]}, {"t": "Cel"})
    assert one.count("<circle") == 1 and 'data-v="5"' in one
    assert "no data" in sparkline([])
    assert "1 points" in sparkline([(1.0, 2.0)])


def test_rows_the_page_cannot_read_show_as_empty_not_as_an_error(tmp_path: Path) -> None:
    import sqlite_utils

    from enricher.sinks.sqlite import migrate

    path = tmp_path / "sink.db"
    migrate(sqlite_utils.Database(path))
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO readings (event_id, device_id, seq, time, flags, readings, derived, late) "
                     "VALUES ('e1', 'd1', 1, '2026-01-01T00:00:00Z', 'not json', '[1]', '{}', 0)")
        conn.execute("INSERT INTO readings (event_id, device_id, seq, time, flags, readings, derived, late) "
                     "VALUES ('e2', 'd2', 1, 'not a time', '[]', '{\"t\": {\"v\": 1}}', '{}', 0)")
    db = ReadingsDb(path)
    try:
        latest = db.latest()
        assert latest["d1"].readings == {} and latest["d1"].flags == []
        assert db.series(0.0) == {"d1": [db.series(0.0)["d1"][0]]} and db.series(0.0)["d1"][0].values == {}
        with pytest.raises(sqlite3.OperationalError):  # read-only: the dashboard cannot write
            db.conn.execute("DELETE FROM readings")
    finally:
        db.close()


def test_more_windows_than_pixels_are_merged_keeping_the_extremes_and_the_weighted_mean() -> None:
    from dashboard.aggregates import Window, merged

    # a week of 60 s windows: counts 1..3, min i % 50, max 7 above it, the newest 80 still open
    windows = [Window(60.0 * i, 60.0 * (i + 1), 1 + i % 3, float(i % 50), float(i % 50 + 7),
                      float(i % 50) + 1, float(i), "Cel", i < 10000) for i in range(10080)]
    drawn = merged(windows, 780)
    assert len(drawn) <= 780 and drawn[0].start == 0.0 and drawn[-1].end == 60.0 * 10080
    assert sum(w.count for w in drawn) == sum(w.count for w in windows)
    assert min(w.min for w in drawn) == 0.0 and max(w.max for w in drawn) == 56.0
    first = windows[:13]  # groups of ceil(10080 / 780) = 13 neighbours
    assert drawn[0].mean == pytest.approx(sum(w.mean * w.count for w in first) / sum(w.count for w in first))
    assert drawn[-1].last == 10079.0 and not drawn[-1].final and drawn[0].final
    assert merged(windows[:5], 780) == windows[:5]
    svg = chart({}, {"t": "Cel"}, bands={"t": windows})
    assert 0 < svg.count("<rect ") - 1 <= 780  # the frame, then the band's rectangles


def test_a_database_without_the_aggregates_table_says_so_on_the_device_page(tmp_path: Path) -> None:
    import sqlite_utils

    from dashboard.aggregates import MISSING
    from enricher.sinks.sqlite import migrate

    path = tmp_path / "sink.db"
    migrate(sqlite_utils.Database(path))
    with sqlite3.connect(path) as conn:  # as a sink older than the aggregates left it
        conn.execute("DROP TABLE aggregates")
        conn.execute("INSERT INTO readings (event_id, device_id, seq, time, flags, readings, derived, late) "
                     "VALUES ('e1', 'd1', 1, '2026-01-01T00:00:00Z', '[]', '{}', '{}', 0)")
    with _serving({"EDGEBRIDGE_SOURCES_SQLITE": str(path)}, "--no-login") as url, \
            urllib.request.urlopen(url + "device/d1?range=1h", timeout=30) as response:
        page = response.read().decode()
    assert response.status == 200
    assert page.count(MISSING) == 1 and "<h2>Last commands</h2>" in page


def test_per_minute_keeps_the_newest_row_of_each_minute(tmp_path: Path) -> None:
    import sqlite_utils

    from enricher.sinks.sqlite import migrate

    path = tmp_path / "sink.db"
    migrate(sqlite_utils.Database(path))
    with sqlite3.connect(path) as conn:
        for n, (stamp, v) in enumerate((("2026-01-01T00:00:05.000Z", 1), ("2026-01-01T00:00:50.000Z", 2),
                                        ("2026-01-01T00:01:10.000Z", 3))):
            conn.execute("INSERT INTO readings (event_id, device_id, seq, time, flags, readings, derived, "
                         "late) VALUES (?, 'd1', ?, ?, '[]', ?, '{}', 0)",
                         [f"e{n}", n + 1, stamp, f'{{"t": {{"v": {v}}}}}'])
    db = ReadingsDb(path)
    try:
        assert [p.values["t"] for p in db.series(0.0)["d1"]] == [1, 2, 3]
        assert [p.values["t"] for p in db.series(0.0, per_minute=True)["d1"]] == [2, 3]
    finally:
        db.close()


def test_recent_rows_follow_new_rows_and_a_late_row_replaces_nothing_newer(tmp_path: Path) -> None:
    import time

    import sqlite_utils

    from dashboard.readings import stamp
    from dashboard.recent import RecentRows
    from enricher.sinks.sqlite import migrate

    path = tmp_path / "sink.db"
    migrate(sqlite_utils.Database(path))
    now = time.time()

    def insert(event: str, at: float, v: float) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO readings (event_id, device_id, seq, time, flags, readings, derived, "
                         "late) VALUES (?, 'd1', 1, ?, '[]', ?, '{}', 0)",
                         [event, stamp(at), f'{{"t": {{"v": {v}}}}}'])

    insert("old", now - 7200, 0.5)  # before the hour: the newest row until others come, in no sparkline
    insert("a", now - 600, 1.0)
    db = ReadingsDb(path)
    try:
        recent = RecentRows(db)
        recent.refresh()
        assert recent.latest_rows()["d1"].readings["t"]["v"] == 1.0
        assert [p.values["t"] for p in recent.series()["d1"]] == [1.0]
        insert("b", now - 60, 2.0)
        insert("late", now - 300, 9.0)  # inserted last, but older than b
        recent.refresh()
        assert recent.latest_rows()["d1"].readings["t"]["v"] == 2.0
        assert [p.values["t"] for p in recent.series()["d1"]] == [1.0, 9.0, 2.0]
        assert recent.last_rowid == db.version()
    finally:
        db.close()


def test_a_command_log_joins_replies_by_id_and_takes_bytes_that_are_not_json() -> None:
    from dashboard.commands import CommandLog

    log = CommandLog(keep=3)
    log.command("d1", b'{"id": "c1", "command": "ping", "args": {}}', 10.0, 0)
    log.command("d1", b"\xff not json", 11.0, 1)
    log.reply("d1", b'{"id": "c1", "ok": true, "result": {"pong": 1}}', b"c1", 12.0, 0)
    log.reply("d1", b"[1, 2]", None, 13.0, 1)  # not an object, no correlation: listed alone, as an error
    assert [(c.id, c.name, c.ok, c.answer) for c in log.of("d1")] == [
        ("reply-at-1", "(reply only)", False, "the reply is not a JSON object"),
        ("command-at-1", "(not JSON)", None, ""),
        ("c1", "ping", True, '{"pong":1}'),  # the reply joined its command, in the command's place
    ]
    log.command("d1", b'{"id": "c2", "command": "flush"}', 14.0, 2)
    log.command("d1", b'{"id": "c3", "command": "status"}', 15.0, 3)
    assert [c.id for c in log.of("d1")] == ["c3", "c2", "reply-at-1"]  # the last three, newest first
    # a reply nested past orjson's dump depth (it loads fine) is shown cut, not raised out of the feed
    log.reply("d1", b'{"ok": true, "result": ' + b"[" * 300 + b"]" * 300 + b"}", b"c9", 16.0, 4)
    assert log.of("d1")[0].answer.startswith("[[[[") and len(log.of("d1")[0].answer) == 300
    assert log.of("nobody") == []


def test_commit_latency_is_read_from_the_histogram_of_the_last_look_or_of_the_whole_life() -> None:
    from dashboard.hops import commit_latency, hop_figures
    from dashboard.pipeline_view import MetricSample

    def histogram(rates: bool) -> list[MetricSample]:
        name = "edgebridge_enricher_commit_seconds"
        # 10 commits in all (sum 1 s); since the last look 2 per second, 0.06 s per second
        out = [MetricSample("enricher", name + "_count", "", 10, 2.0 if rates else None),
               MetricSample("enricher", name + "_sum", "", 1.0, 0.06 if rates else None)]
        for le, value, rate in (("0.025", 2, 1.0), ("0.05", 9, 2.0), ("0.5", 10, 2.0), ("+Inf", 10, 2.0)):
            out.append(MetricSample("enricher", name + "_bucket", f"le={le}", value, rate if rates else None))
        return out

    assert commit_latency(histogram(True)) == "mean 30.0 ms, p95 <= 50 ms (the last look)"
    assert commit_latency(histogram(False)) == "mean 100.0 ms, p95 <= 500 ms (the enricher's life)"
    assert commit_latency([]) == ""
    hops = {h.key: h for h in hop_figures([], histogram(True))}
    assert hops["commit_latency"].value.startswith("mean 30.0 ms")
    assert hops["bridge"].value == "" and "not reported" in hops["bridge"].source
