"""The dashboard's fixtures: a real pipeline behind it, a running ``edgebridge dashboard``, a browser.

``pipeline`` builds, once per module (the browser tests share it, so the suite pays for one pipeline):
topics of its own on the session's Kafka, a registry, the real enricher (in process) and the real
SQLite sink (in process) writing ``sink.db``, then the dashboard as a subprocess (``edgebridge
dashboard``, the command an operator runs) reading all of it with a token. ``browser`` is Debian's
headless chromium driven by its chromedriver; in CI a missing one fails, elsewhere the tests skip.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from edgebridge.config import load_config
from edgebridge.envelope import new_reading
from edgebridge.topics import KafkaTopics
from tests.conftest import IN_CI, BrokerAddresses
from tests.enricher.conftest import InProcess, enricher_config, produce
from tests.enricher.conftest import postgres as postgres  # the session's PostgreSQL, for the source's tests
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-" + uuid.uuid4().hex
# set to a folder (docs/img) to keep a copy of the screenshots there: tools/dashboard_screenshots.sh
SCREENSHOTS_ENV = "EDGEBRIDGE_DASHBOARD_SCREENSHOTS"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")

REGISTRY = {
    "dash-pump-1": {"name": "Pump 1", "site": "plant-a", "location": "hall 2",
                    "thresholds": {"temperature": {"max": 45}}},
    "dash-pump-2": {"name": "Pump 2", "site": "plant-b", "location": "roof"},
    "dash-meter-3": {"name": "Meter 3", "site": "plant-a", "location": "cellar"},
}

PUMP_1_TEMPERATURE = (21.5, 23.0, 22.1, 24.6, 23.8, 25.2)
PUMP_1_HUMIDITY = (48.0, 45.5, 47.0, 41.0, 43.5, 40.0)


# a device's aggregate windows, as (minutes before now, readings in the window, final): three within the
# hour (none within 15 minutes), one two hours ago (in 6h, not in 1h)
WINDOWS = ((50, (21.5, 22.5), True), (45, (23.0, 24.6, 23.8), True), (30, (25.25,), False),
           (120, (19.0, 18.0), True))


def aggregate_records(device: str, measurement: str, unit: str, now: float, too_late: int, ahead: int
                      ) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """:data:`WINDOWS` as the aggregator's records of ``iot.aggregates`` (its own encoders, 60 s windows),
    and each window's figures computed here, apart from its code: what the page must show."""
    from enricher.aggregates import table
    from enricher.aggregates.windows import Figures, WindowRule

    rule = WindowRule(60_000, 60_000)
    records, expected = [], []
    for minutes, values, final in WINDOWS:
        start = rule.start(int((now - minutes * 60) * 1000))
        figures = Figures.first(values[0], start + 1000, unit)
        for i, v in enumerate(values[1:], 2):
            figures.add(v, start + i * 1000, unit)
        records.append((table.window_key(device, measurement, start),
                        table.window_value(device, measurement, start, rule, figures, final)))
        expected.append({"start": start / 1000, "count": len(values), "min": min(values), "max": max(values),
                         "mean": sum(values) / len(values), "last": values[-1], "final": final,
                         "minutes": minutes})
    for kind, count in ((table.TOO_LATE, too_late), (table.AHEAD, ahead)):
        records.append((table.too_late_key(device, measurement, kind),
                        table.too_late_value(device, measurement, count, kind)))
    return records, expected


def figures_shown(rows: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """The aggregates table's rows, (data-start, the cells' texts), as figures comparable with
    :func:`aggregate_records`' (the mean rounded as the page shows it: 6 significant digits)."""
    return [{"start": float(start), "count": int(cells[2]), "min": float(cells[3]), "max": float(cells[4]),
             "mean": float(cells[5]), "last": float(cells[6]), "final": cells[7] == "final"}
            for start, cells in rows]


def figures_expected(expected: list[dict[str, Any]], within_minutes: float) -> list[dict[str, Any]]:
    """The windows of a range, newest first, as :func:`figures_shown` reads them."""
    return [{**{k: v for k, v in e.items() if k != "minutes"}, "mean": float(f"{e['mean']:g}")}
            for e in sorted(expected, key=lambda e: -e["start"]) if e["minutes"] < within_minutes]


def write_aggregates(store: Any, topic: str, records: list[tuple[str, bytes]]) -> None:
    """Records upserted as a sink writes them: its row builder, its store, one batch with its offsets."""
    from enricher.sinks.quarantine import Batch, Origin
    from enricher.sinks.rows import aggregate_row_of

    batch = Batch(topic, table="aggregates")
    for offset, (key, value) in enumerate(records):
        origin = Origin(0, offset, key.encode(), value)
        batch.add(aggregate_row_of(origin.key, value), origin)
    batch.offsets[0] = len(records)
    store.write(batch)


def reading(device: str, seq: int, temperature: float, humidity: float, at: float) -> Any:
    from dashboard.readings import stamp

    return new_reading(device, seq, {"temperature": {"v": temperature, "u": "Cel"},
                                     "humidity": {"v": humidity, "u": "%RH"}}, time=stamp(at))


@dataclass
class Pipeline:
    brokers: BrokerAddresses
    topics: KafkaTopics
    db: Path
    url: str
    mqtt_prefix: str
    sent: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)  # device -> seq, t, h
    seq: dict[str, int] = field(default_factory=dict)

    def send(self, device: str, temperature: float, humidity: float, at: float | None = None) -> int:
        """One raw event through the real enricher and sink; returns its seq."""
        seq = self.seq.get(device, 0) + 1
        self.seq[device] = seq
        produce(self.brokers.kafka_bootstrap, self.topics.raw,
                [(device, reading(device, seq, temperature, humidity, time.time() if at is None else at))])
        self.sent.setdefault(device, []).append((seq, temperature, humidity))
        return seq

    def rows(self, device: str) -> list[tuple[int, dict[str, Any]]]:
        """What the sink holds for a device, read independently of the dashboard."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            found = conn.execute("SELECT seq, readings FROM readings WHERE device_id = ? ORDER BY seq",
                                 [device]).fetchall()
        return [(seq, orjson.loads(r)) for seq, r in found]

    def aggregate_keys(self, device: str) -> set[str]:
        """The keys of the sink's aggregates rows of a device, read independently of the dashboard."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return {k for (k,) in conn.execute("SELECT key FROM aggregates WHERE device_id = ?", [device])}


def _make_topics(admin: Any, prefix: str) -> KafkaTopics:
    from confluent_kafka.admin import NewTopic

    compact = {"cleanup.policy": "compact"}
    names = {"raw": (1, {}), "processed": (2, {}), "deadletter": (1, {}), "alerts": (1, {}),
             "devices": (1, compact), "enricher_state": (1, compact), "commands": (1, {}),
             "command_responses": (1, {}), "status": (1, {}), "aggregates": (1, {})}
    topics = {role: f"{prefix}-{role}" for role in names}
    futures = admin.create_topics([NewTopic(topics[r], num_partitions=p, replication_factor=1, config=c)
                                   for r, (p, c) in names.items()])
    for future in futures.values():
        future.result(timeout=30)
    return KafkaTopics(**topics)


class _Sink:
    """The real SQLite sink on a thread of the test process (made there: sqlite3 keeps a connection to
    the thread that opened it)."""

    def __init__(self, brokers: BrokerAddresses, topics: KafkaTopics, db: Path, group: str) -> None:
        from enricher.sinks.base import SinkConfig

        self.config = load_config(SinkConfig, None, env={}, overrides={
            "group_id": group, "topics.processed": topics.processed,
            # with the aggregator's topic, as `EDGEBRIDGE_AGGREGATES=true edgebridge sink sqlite` reads it
            "aggregates": True, "topics.aggregates": topics.aggregates,
            "kafka.bootstrap": brokers.kafka_bootstrap, "batch_ms": 100, "metrics.enabled": False})
        self.db = db
        self.runner: Any = None
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from enricher.sinks.base import SinkRunner
        from enricher.sinks.sqlite import SqliteStore

        self.runner = SinkRunner(self.config, SqliteStore(self.db))
        self.ready.set()
        self.runner.run(self.stop)

    def __enter__(self) -> _Sink:
        self.thread.start()
        assert self.ready.wait(60), "the sink did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def _publish_status(brokers: BrokerAddresses, prefix: str, states: dict[str, str]) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(brokers.mqtt_host, brokers.mqtt_port)
    client.loop_start()
    try:
        for device, state in states.items():
            client.publish(f"{prefix}/{device}/status", state, qos=1, retain=True).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture(scope="module")
def pipeline(brokers: BrokerAddresses, kafka_admin: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("dashboard")
    name = f"dash-{uuid.uuid4().hex[:8]}"
    topics = _make_topics(kafka_admin, name)
    produce(brokers.kafka_bootstrap, topics.devices,
            [(d, orjson.dumps(obj)) for d, obj in REGISTRY.items()])
    prefix = f"{name}-devices"
    _publish_status(brokers, prefix, {"dash-pump-1": "online", "dash-pump-2": "offline"})
    db = tmp / "sink.db"
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    enricher = enricher_config(brokers, topics, f"{name}-enricher")
    with InProcess(enricher) as processor, _Sink(brokers, topics, db, f"{name}-sink") as sink:
        yield from _with_dashboard(brokers, topics, db, prefix, token_file, sink, processor, tmp)


def _with_dashboard(brokers: BrokerAddresses, topics: KafkaTopics, db: Path, prefix: str, token_file: Path,
                    sink: _Sink, processor: InProcess, tmp: Path) -> Iterator[Pipeline]:
    from edgebridge.metrics import MetricsServer, new_registry
    from enricher.sinks.metrics import register

    # the sink's and the enricher's own metrics endpoints, as their commands serve them, in the
    # dashboard's list
    registry = new_registry(process_metrics=False)
    register(sink.runner, registry)
    metrics = MetricsServer("127.0.0.1", 0, registry).start()
    enricher_metrics = MetricsServer("127.0.0.1", 0, processor.processor.metrics.registry).start()
    config = tmp / "dashboard.toml"
    config.write_text(f"""
[web]
host = "127.0.0.1"
port = 0
token_file = "{token_file}"
[sources]
sqlite = "{db}"
refresh = 0.5
metrics = ["sink={metrics.url}/metrics", "enricher={enricher_metrics.url}/metrics"]
[kafka]
bootstrap = "{brokers.kafka_bootstrap}"
[mqtt]
url = "{brokers.mqtt_url}"
topic_prefix = "{prefix}"
""" + "\n".join(["[topics]"] + [f'{k} = "{v}"' for k, v in vars_of(topics).items()]) + "\n")
    line = Pipeline(brokers, topics, db, "", prefix)
    try:
        now = time.time()
        # a point every 5 minutes, 50 to 25 minutes ago: within the hour, none within 15 minutes
        for i, (t, h) in enumerate(zip(PUMP_1_TEMPERATURE, PUMP_1_HUMIDITY, strict=True)):
            at = now - 3000 + i * 300
            line.send("dash-pump-1", t, h, at)
            line.send("dash-pump-2", 30.0 - i, 55.0, at)
        line.send("dash-meter-3", 12.5, 80.0)
        # bytes no decoder takes, keyed by a device: a dead letter (not_json) of dash-meter-3
        produce(brokers.kafka_bootstrap, topics.raw, [("dash-meter-3", b"\xff\xfe not json")])
        wait_for(lambda: len(line.rows("dash-pump-1")) == 6 and len(line.rows("dash-meter-3")) == 1
                 and len(line.rows("dash-pump-2")) == 6, 120, "rows in the sink")
        log = (tmp / "dashboard.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "edgebridge", "dashboard", "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=log, cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline().decode()
            assert first.startswith("dashboard: http://127.0.0.1:"), (tmp / "dashboard.log").read_text()
            line.url = first.split(" ", 1)[1].strip()
            yield line
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
            log.close()
    finally:
        metrics.stop()
        enricher_metrics.stop()


def vars_of(topics: KafkaTopics) -> dict[str, str]:
    return {f: getattr(topics, f) for f in KafkaTopics.__dataclass_fields__}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless chromium from Debian's packages; a missing one fails in CI (make setup installs it)."""
    binary, driver = CHROMIUM
    if not (os.access(binary, os.X_OK) and os.access(driver, os.X_OK)):
        message = f"{binary} and {driver} needed (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,900", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    web = webdriver.Chrome(options=options, service=Service(driver, log_output=str(driver_log)))
    web.set_page_load_timeout(60)
    try:
        yield web
    finally:
        web.quit()


def screenshot(web: Any, path: Path) -> Path:
    """A PNG of the page, under the test's tmp dir; copied to $EDGEBRIDGE_DASHBOARD_SCREENSHOTS too."""
    assert web.save_screenshot(str(path))
    target = os.environ.get(SCREENSHOTS_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path
