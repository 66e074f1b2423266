"""The README's main job, `edgebridge demo`, end to end on brokers of its own."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from simulators.chaos import FAULTS
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def test_demo_runs_the_fleet_end_to_end_and_the_audit_passes(tmp_path: Path) -> None:
    """With --dashboard: the sink and the dashboard beside the pipeline, serving after the audit until
    SIGTERM, showing both devices with every reading the sink wrote."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgebridge", "demo", "--state-dir", str(tmp_path / "brokers"),
         "--devices", "2", "--events", "300", "--rate", "300", "--timeout", "120", "--dashboard"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        serving = wait_for(lambda: [x for x in lines if x.startswith("dashboard still serving at ")]
                           or proc.poll() is not None, 280, "the demo's audit")
        assert isinstance(serving, list), "".join(lines)
        url = serving[0].split(" at ", 1)[1].split(";")[0]
        (db,) = [x.split("(sink into ", 1)[1].rstrip(")\n") for x in lines if "(sink into " in x]
        with urllib.request.urlopen(url + "api/fleet", timeout=30) as response:
            fleet = {row["device_id"]: row for row in json.loads(response.read())}
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            stored = dict(conn.execute("SELECT device_id, COUNT(*) FROM readings GROUP BY device_id"))
        assert sorted(stored.values()) == [300, 300], stored
        assert set(fleet) == set(stored) and all(row["readings"] for row in fleet.values()), fleet
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), stderr)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "raw: complete" in out
    assert "processed: complete, exactly once" in out
    # Both devices audited with all 300 readings, none missing; one epoch each (columns: device, epoch,
    # records, distinct, ...).
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("demo-")]
    assert len(rows) == 4  # 2 devices x (raw, processed)
    assert all(row[3] == "300" and row[-1] == "none" for row in rows), rows
    assert "processes exited 0" in out and "not 0" not in out
    assert _aggregates_checked(out) > 0, out


def _aggregates_checked(out: str) -> int:
    """The windows of the demo's final aggregates check, which must have found them equal to its
    recomputation from the processed topic (and the RESULT says so)."""
    (line,) = [x.strip() for x in out.splitlines() if x.strip().startswith("aggregates: ")]
    assert "equal to a recomputation from iot.events.processed" in line, out
    assert "aggregates equal to a recomputation" in out.splitlines()[-1], out
    return int(line.split()[1])


def test_demo_with_chaos_every_fault_kind_and_still_audits_clean(tmp_path: Path) -> None:
    """Seven rounds, one of each kind (simulators.chaos): kill -9 of bridge, enricher, aggregator, an
    agent and Mosquitto, Kafka frozen and killed; the audit must come out complete, exactly once,
    gap-free, and the aggregates equal to a recomputation from the processed topic."""
    result = subprocess.run(
        [sys.executable, "-m", "edgebridge", "demo", "--state-dir", str(tmp_path / "brokers"),
         "--devices", "2", "--events", "3000", "--rate", "300", "--timeout", "240",
         "--chaos", "--seed", "3", "--rounds", "7"],
        capture_output=True, text=True, timeout=290,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    injected = [line.split(":", 1)[1].split()[0] for line in out.splitlines()
                if line.strip().startswith("chaos t=")]
    assert sorted(set(injected) - {"thaw-kafka"}) == sorted(FAULTS), out
    assert "kill-aggregator" in injected, out  # killed mid-run, and its windows still check out below
    assert _aggregates_checked(out) > 0, out
    assert "raw: complete" in out
    assert "processed: complete, exactly once, no gap announced" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("demo-")]
    processed = rows[len(rows) // 2:]
    # The killed agent's source started anew after its restart: more than 3000 events for it.
    assert sorted(int(row[3]) > 3000 for row in processed) == [False, True], rows
    assert all(row[4] == "0" and row[-1] == "none" for row in processed), rows


def test_the_live_totals_add_up_the_lives_of_a_restarted_process() -> None:
    from simulators.demo import RunningTotal

    total = RunningTotal()
    assert [total.update(v) for v in (10, 25, None, 25, 4, 9, None, 0, 3)] == [
        10, 25, 25, 25, 29, 34, 34, 34, 37]


def test_chaos_with_a_cluster_or_replicas_is_refused_in_one_line() -> None:
    for extra in (["--kafka-nodes", "3"], ["--bridges", "2"]):
        result = subprocess.run([sys.executable, "-m", "edgebridge", "demo", "--chaos", *extra],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.endswith("--chaos runs with one Kafka node and one bridge"), result.stderr
