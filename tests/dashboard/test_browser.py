"""The dashboard in a real browser, on a real pipeline (see conftest): what an operator sees.

Each test reads what it expects independently (the sink's database, Kafka) and compares it with what
the page shows; the live test proves the new value was not on the page before the event was sent, and
that the page was not reloaded to show it.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import (
    REGISTRY,
    TOKEN,
    Pipeline,
    aggregate_records,
    figures_expected,
    figures_shown,
    screenshot,
)
from tests.enricher.conftest import produce, read_all
from tests.waiting import wait_for

pytestmark = [pytest.mark.brokers, pytest.mark.browser]


def _status(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _log_in(web: Any, pipeline: Pipeline) -> None:
    from selenium.webdriver.common.by import By

    web.get(pipeline.url + "login")
    web.find_element(By.NAME, "token").send_keys(TOKEN)
    web.find_element(By.CSS_SELECTOR, "form button").click()
    wait_for(lambda: web.find_elements(By.ID, "fleet"), 60, "the fleet table after logging in")
    web.get_log("browser")  # what came before the login (the 401 of the first visit) is not judged


def _console_errors(web: Any) -> list[dict[str, Any]]:
    return [entry for entry in web.get_log("browser") if entry["level"] == "SEVERE"]


# Read in one script: the live stream replaces the table while the test reads it, and a script runs
# between two replacements, where element handles held across them would go stale.
_ROW = """
const heads = [...document.querySelectorAll('#fleet thead th')].map(th => th.textContent);
const row = document.querySelector('#fleet tbody tr[data-device="' + arguments[0] + '"]');
if (!row) return null;
return Object.fromEntries([...row.cells].map((td, i) => [heads[i], td.innerText]));
"""
_ROWS = ("return [...document.querySelectorAll('#fleet tbody tr')].filter(r => !r.hidden)"
         ".map(r => r.dataset.device)")
_INPUT = "document.getElementById('filter').dispatchEvent(new Event('input', {bubbles: true}))"
_BY_LOCATION = "document.querySelector('#fleet th[data-col=\"2\"]').click()"
# the chart's points, by measurement: their values (data-v) as drawn
_CHART = """return Object.fromEntries([...document.querySelectorAll('svg.chart g.series')].map(
    g => [g.dataset.name, [...g.querySelectorAll('circle')].map(c => parseFloat(c.dataset.v))]))"""
_TABLE = """return [...document.querySelectorAll(arguments[0])].map(
    r => [...r.querySelectorAll('td')].map(td => td.innerText))"""
DESCENDING = ["dash-pump-2", "dash-pump-1", "dash-meter-3"]  # roof, hall 2, cellar


def _cells(web: Any, device: str) -> dict[str, str]:
    """The fleet row of a device: column header -> text."""
    cells = web.execute_script(_ROW, device)
    assert cells is not None, f"no row of {device}"
    return dict(cells)


def test_no_credential_or_a_wrong_one_gets_401_and_the_token_gets_in(pipeline: Pipeline) -> None:
    url = pipeline.url
    for path in ("", "pipeline", "device/dash-pump-1", "events?view=fleet", "api/fleet"):
        assert _status(url + path) == 401, path
        assert _status(url + path, {"Authorization": "Bearer wrong"}) == 401, path
        assert _status(url + path, _basic("admin", "wrong")) == 401, path
        assert _status(url + path, {"Cookie": "edgebridge_dashboard=forged"}) == 401, path
    assert _status(url + "login", data=b"token=wrong") == 401
    # the same requests with the token: the refusals above were the credential's, not the path's
    assert _status(url, {"Authorization": f"Bearer {TOKEN}"}) == 200
    assert _status(url + "api/fleet", _basic("anyone", TOKEN)) == 200


def test_fleet_page_shows_the_devices_and_values_sent_without_console_errors(
        browser: Any, pipeline: Pipeline, tmp_path: Path) -> None:
    _log_in(browser, pipeline)
    wait_for(lambda: "online" in _cells(browser, "dash-pump-1")["status"], 60, "dash-pump-1 online")
    for device, info in REGISTRY.items():
        cells = _cells(browser, device)
        assert cells["site"] == info["site"] and cells["location"] == info["location"]
        assert info["name"] in cells["device"]
        # the newest row in the sink, read independently, is what the page shows
        seq, readings = pipeline.rows(device)[-1]
        assert seq == pipeline.sent[device][-1][0]
        _, temperature, humidity = pipeline.sent[device][-1]
        assert readings["temperature"]["v"] == temperature
        assert f"temperature {temperature:.4g} Cel" in cells["latest values"]
        assert f"humidity {humidity:.4g} %RH" in cells["latest values"]
    assert "offline" in _cells(browser, "dash-pump-2")["status"]
    assert "offline" in _cells(browser, "dash-pump-2")["alerts"]
    assert "unknown" in _cells(browser, "dash-meter-3")["status"]
    # counted by the page from the row's time, not sent with each update
    assert re.fullmatch(r"\d+[smh] ago", _cells(browser, "dash-meter-3")["last seen"])
    from selenium.webdriver.common.by import By

    # sparklines of the last hour: a line of 6 points for each pump's two measurements
    sparks = browser.execute_script("""return [...document.querySelectorAll(
        '#fleet tr[data-device="dash-pump-1"] svg.spark polyline')].map(p => p.getAttribute('points'))""")
    assert [len(points.split()) for points in sparks] == [6, 6]
    # client-side filter and sort
    browser.find_element(By.ID, "filter").send_keys("plant-b")
    assert browser.execute_script(_ROWS) == ["dash-pump-2"]
    browser.find_element(By.ID, "filter").clear()
    browser.execute_script(_INPUT)
    assert browser.execute_script(_ROWS) == sorted(REGISTRY)
    browser.execute_script(_BY_LOCATION)
    browser.execute_script(_BY_LOCATION)  # twice: descending, not the order the server sends
    assert browser.execute_script(_ROWS) == DESCENDING
    # the order outlives an update of the table by the live stream (a row replaced by a new event)
    updates = browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates")
    pipeline.send("dash-meter-3", 13.5, 79.0)
    wait_for(lambda: "temperature 13.5 Cel" in _cells(browser, "dash-meter-3")["latest values"], 60,
             "the update")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") != updates
    assert browser.execute_script(_ROWS) == DESCENDING
    wait_for(lambda: browser.find_element(By.ID, "conn").text == "live", 30, "the live stream open")
    assert _console_errors(browser) == []
    screenshot(browser, tmp_path / "dashboard-fleet.png")


# a mark on the DOM nodes of two rows and of one row's sparklines cell: a node the live stream replaced
# has lost it
_MARK = """for (const d of ['dash-pump-1', 'dash-pump-2']) {
    const row = document.querySelector('#fleet tr[data-device="' + d + '"]');
    row.marked = true; row.querySelector('td.sparks').marked = true; }
return Math.floor(Date.now() / 60000)"""
_MARKED = """return Object.fromEntries(['dash-pump-1', 'dash-pump-2'].map(d => {
    const row = document.querySelector('#fleet tr[data-device="' + d + '"]');
    return [d, [row.marked === true, row.querySelector('td.sparks').marked === true,
                [...row.querySelectorAll('svg.spark polyline')].map(
                    p => p.getAttribute('points').split(' ').length)]];
}))"""
_MINUTE = "return Math.floor((Date.now() - 3000) / 60000)"


def test_the_fleet_page_updates_when_a_new_event_arrives_without_reload(
        browser: Any, pipeline: Pipeline) -> None:
    from selenium.webdriver.common.by import By

    _log_in(browser, pipeline)
    browser.execute_script("window.notReloaded = true")
    before = _cells(browser, "dash-pump-2")["latest values"]
    assert "temperature 77.7 Cel" not in before
    # the stream's first message (every row) is in: what comes next is what changed
    wait_for(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates"), 30,
             "the stream's first message")
    minute = browser.execute_script(_MARK)
    seq = pipeline.send("dash-pump-2", 77.7, 33.3)
    # the event really went through the enricher into the sink
    wait_for(lambda: pipeline.rows("dash-pump-2")[-1][0] == seq, 60, "the new row in the sink")
    wait_for(lambda: "temperature 77.7 Cel" in _cells(browser, "dash-pump-2")["latest values"], 30,
             "the new value on the page")
    assert browser.execute_script("return window.notReloaded") is True
    assert int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates")) >= 2
    # incremental: dash-pump-2's row was replaced, dash-pump-1's (unchanged) was not; dash-pump-2's
    # sparklines (the closed minutes: the new event is in the current one) were kept, still six points,
    # unless a minute closed meanwhile (then every sparkline is sent again)
    marked = browser.execute_script(_MARKED)
    assert marked["dash-pump-1"][0] is True and marked["dash-pump-2"][0] is False, marked
    assert marked["dash-pump-2"][2] == [6, 6], marked
    if browser.execute_script(_MINUTE) == minute:
        assert marked["dash-pump-2"][1] is True, marked
    assert _console_errors(browser) == []


def _stream(pipeline: Pipeline) -> Iterator[dict[str, Any]]:
    """The fleet page's live stream, read as a script would: its update messages."""
    request = urllib.request.Request(pipeline.url + "events?view=fleet",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as stream:
        for line in stream:
            if line.startswith(b"data: "):
                yield json.loads(line[6:])


def test_the_live_stream_sends_every_row_first_then_only_the_rows_that_changed(pipeline: Pipeline) -> None:
    messages = _stream(pipeline)
    first = next(messages)
    assert first["full"] is True
    assert sorted(r["d"] for r in first["rows"]) == sorted(REGISTRY)
    assert all("row" in r and "spark" in r for r in first["rows"])
    seq = pipeline.send("dash-meter-3", 66.6, 11.1)
    wait_for(lambda: pipeline.rows("dash-meter-3")[-1][0] == seq, 60, "the new row in the sink")
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "no update of dash-meter-3"
        message = next(messages)
        assert message["full"] is False
        changed = [r["d"] for r in message["rows"] if "row" in r]
        if "temperature</i> <b>66.6</b>" in "".join(r.get("row", "") for r in message["rows"]):
            break
        # anything before it: the summary, or every sparkline when a minute closed, but no row
        assert changed == [], message
    assert changed == ["dash-meter-3"]
    messages.close()


def test_the_device_page_draws_its_chart_of_the_values_sent(
        browser: Any, pipeline: Pipeline, tmp_path: Path) -> None:

    _log_in(browser, pipeline)
    browser.get(pipeline.url + "device/dash-pump-1?range=1h")
    wait_for(lambda: browser.execute_script(_CHART), 30, "the chart")
    drawn = browser.execute_script(_CHART)
    rows = pipeline.rows("dash-pump-1")
    assert drawn == {"humidity": [r["humidity"]["v"] for _, r in rows],
                     "temperature": [r["temperature"]["v"] for _, r in rows]}
    assert drawn["temperature"] == [t for _, t, _ in pipeline.sent["dash-pump-1"]]
    # a range that holds none of them: an empty chart, said so
    browser.get(pipeline.url + "device/dash-pump-1?range=15m")
    assert browser.execute_script(_CHART) == {}
    assert "no readings in this range" in browser.execute_script(
        "return document.querySelector('svg.chart').textContent")
    browser.get(pipeline.url + "device/dash-pump-1?range=1h")
    wait_for(lambda: browser.execute_script(_CHART), 30, "the chart again")
    screenshot(browser, tmp_path / "dashboard-device.png")
    # the dead letter of dash-meter-3 on its own page
    browser.get(pipeline.url + "device/dash-meter-3")
    wait_for(lambda: "not_json" in browser.execute_script("return document.getElementById('live').innerText"),
             60, "its dead letter")
    assert _console_errors(browser) == []


def test_the_pipeline_page_shows_offsets_lag_dead_letters_and_metrics(
        browser: Any, pipeline: Pipeline) -> None:

    _log_in(browser, pipeline)
    browser.get(pipeline.url + "pipeline")
    raw = len(read_all(pipeline.brokers.kafka_bootstrap, pipeline.topics.raw))
    assert raw == sum(len(v) for v in pipeline.sent.values()) + 1  # and the bytes that are not JSON

    def rows(selector: str) -> list[list[str]]:
        return list(browser.execute_script(_TABLE, selector))

    topic = f'#topics tr[data-topic="{pipeline.topics.raw}"]'
    wait_for(lambda: [r[:3] for r in rows(topic)] == [["raw", pipeline.topics.raw, str(raw)]], 60,
             "raw's end offset")
    wait_for(lambda: rows('#reasons tr[data-reason="not_json"]') == [["not_json", "1"]], 60,
             "the dead letter")
    # the enricher's group, its lag on raw read against the end offset
    lag = wait_for(lambda: [r for r in rows("#lag tr[data-group]") if r[1] == pipeline.topics.raw], 60,
                   "the enricher's group")
    assert all(int(r[4]) == raw and int(r[5]) == raw - int(r[3]) for r in lag), lag
    written = sum(len(pipeline.rows(d)) for d in pipeline.sent)
    wait_for(lambda: [r for r in rows("#metrics tr") if r[1:2] == ["edgebridge_sink_written_total"]
                      and r[3] == str(written)], 60, "the sink's metrics")
    assert _console_errors(browser) == []


def _seqs(pipeline: Pipeline, topic: str, device: str) -> list[int]:
    """The seqs of a device's events in a topic, read committed (what is not a JSON event is skipped)."""
    out = []
    for message in read_all(pipeline.brokers.kafka_bootstrap, topic):
        try:
            event = json.loads(message.value())
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("deviceid") == device:
            out.append(event.get("seq"))
    return out


_HOP = """return Object.fromEntries([...document.querySelectorAll('#hops tr[data-hop]')].map(
    r => [r.dataset.hop, [...r.querySelectorAll('td')].map(td => td.innerText)]))"""


def test_the_pipeline_page_names_a_duplicate_dropped_and_a_gap_opened_by_hop(
        browser: Any, pipeline: Pipeline, tmp_path: Path) -> None:
    from tests.dashboard.conftest import reading
    from tests.enricher.conftest import produce

    _log_in(browser, pipeline)
    browser.get(pipeline.url + "pipeline")
    hops = wait_for(lambda: browser.execute_script(_HOP), 60, "the hops table")
    assert hops["duplicates"][2] == "0" and hops["open_gaps"][2] == "0", hops
    assert "not reported" in hops["edge_committed"][2]  # no agent endpoint configured: said so
    # the fault: dash-pump-1's seq 8 (7 skipped: a gap) sent twice, the same event, into raw
    device, seq = "dash-pump-1", pipeline.seq["dash-pump-1"] + 2
    event = reading(device, seq, 26.0, 39.0, time.time())
    produce(pipeline.brokers.kafka_bootstrap, pipeline.topics.raw, [(device, event), (device, event)])
    pipeline.seq[device] = seq
    pipeline.sent[device].append((seq, 26.0, 39.0))
    assert _seqs(pipeline, pipeline.topics.raw, device).count(seq) == 2
    # read back independently: processed (read committed) holds seq 8 once and no seq 7
    wait_for(lambda: seq in _seqs(pipeline, pipeline.topics.processed, device), 60, "seq 8 processed")
    processed = _seqs(pipeline, pipeline.topics.processed, device)
    assert processed.count(seq) == 1 and seq - 1 not in processed, processed
    wait_for(lambda: pipeline.rows(device)[-1][0] == seq, 60, "seq 8 in the sink")
    raw = len(read_all(pipeline.brokers.kafka_bootstrap, pipeline.topics.raw))
    written = str(sum(len(pipeline.rows(d)) for d in pipeline.sent))
    hops = wait_for(lambda: (h := browser.execute_script(_HOP))["duplicates"][2] == "1"
                    and h["raw"][2] == str(raw) and h["sinks"][2] == written and h, 60,
                    "the duplicate, raw's end offset and the sink's rows on the page")
    assert hops["open_gaps"][2] == "1", hops
    assert hops["commit_latency"][2].startswith("mean "), hops
    assert _console_errors(browser) == []
    screenshot(browser, tmp_path / "dashboard-pipeline.png")


_COMMANDS = """return [...document.querySelectorAll('#commands tr[data-command]')].map(
    r => [r.dataset.command, ...[...r.querySelectorAll('td')].map(td => td.innerText)])"""


def test_the_device_page_lists_its_last_commands_and_their_replies(browser: Any, pipeline: Pipeline) -> None:
    import os
    import subprocess
    import sys

    from confluent_kafka import Producer

    from tests.dashboard.conftest import ROOT

    # two commands sent by `edgebridge command` itself (no --wait: no agent in this pipeline)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    env.update({"EDGEBRIDGE_KAFKA_BOOTSTRAP": pipeline.brokers.kafka_bootstrap,
                "EDGEBRIDGE_TOPICS_COMMANDS": pipeline.topics.commands})
    for args in (["ping"], ["set-interval", "seconds=5"]):
        done = subprocess.run([sys.executable, "-m", "edgebridge", "command", "dash-pump-2", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    records = read_all(pipeline.brokers.kafka_bootstrap, pipeline.topics.commands)
    sent = [json.loads(m.value()) for m in records if m.key() == b"dash-pump-2"]
    assert [c["command"] for c in sent] == ["ping", "set-interval"]
    ping, interval = sent
    # the reply to the ping as the bridge's uplink carries it up: verbatim, correlation data in a header
    producer = Producer({"bootstrap.servers": pipeline.brokers.kafka_bootstrap})
    producer.produce(pipeline.topics.command_responses, json.dumps({"id": ping["id"], "ok": True,
                     "result": {"pong": 1}}).encode(), b"dash-pump-2",
                     headers=[("correlation_data", ping["id"].encode())])
    assert producer.flush(30) == 0

    _log_in(browser, pipeline)
    browser.get(pipeline.url + "device/dash-pump-2")
    shown = wait_for(lambda: (rows := browser.execute_script(_COMMANDS)) and len(rows) == 2
                     and rows[1][5] == "ok" and rows, 60, "the commands and the reply")
    # newest first: the set-interval (no reply yet), then the ping and its answer
    assert [r[0] for r in shown] == [interval["id"], ping["id"]]
    assert shown[0][2:4] == ["set-interval", '{"seconds":5}'] and shown[0][5] == "no reply yet"
    assert shown[1][2] == "ping" and json.loads(shown[1][6]) == {"pong": 1}
    assert _console_errors(browser) == []


_AGGREGATES = """return [...document.querySelectorAll('#aggregates tr[data-measurement]')].map(
    r => [r.dataset.start, [...r.querySelectorAll('td')].map(td => td.innerText)])"""
_BANDS = """return [...document.querySelectorAll('svg.chart g.band[data-name="temperature"] rect')].map(
    r => ({min: parseFloat(r.dataset.min), max: parseFloat(r.dataset.max)}))"""


def test_the_device_page_shows_the_aggregates_the_sink_read_from_the_aggregator_topic(
        browser: Any, pipeline: Pipeline) -> None:
    """The aggregator's records on the real topic, the real sink (aggregates = true) upserting them,
    the page drawing and listing what it wrote."""
    device = "dash-pump-2"
    records, expected = aggregate_records(device, "temperature", "Cel", time.time(), too_late=2, ahead=1)
    produce(pipeline.brokers.kafka_bootstrap, pipeline.topics.aggregates,
            records)
    wait_for(lambda: pipeline.aggregate_keys(device) == {key for key, _ in records}, 60, "the sink's rows")
    _log_in(browser, pipeline)
    browser.get(pipeline.url + f"device/{device}?range=1h")
    # rendered blocks are kept up to 5 s: the live stream brings the table if the first load had none
    wait_for(lambda: browser.execute_script(_AGGREGATES), 30, "the aggregates table")
    assert figures_shown(browser.execute_script(_AGGREGATES)) == figures_expected(expected, 60)
    assert browser.execute_script(_BANDS) == [{"min": e["min"], "max": e["max"]}
                                              for e in reversed(figures_expected(expected, 60))]
    counts = browser.execute_script("return document.getElementById('aggregate-counts').innerText")
    assert "temperature: 2 too late" in counts and "temperature: 1 ahead of the clock" in counts
    browser.get(pipeline.url + f"device/{device}?range=6h")
    assert figures_shown(browser.execute_script(_AGGREGATES)) == figures_expected(expected, 360)
    # a device without windows in the table: said in one line
    browser.get(pipeline.url + "device/dash-meter-3?range=1h")
    assert browser.execute_script("return document.getElementById('aggregates-note').innerText") == \
        "no aggregate windows in this range"
    assert _console_errors(browser) == []
