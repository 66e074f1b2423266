"""The README's main job, `edgebridge demo`, end to end on brokers of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulators.chaos import FAULTS

pytestmark = pytest.mark.brokers


def test_demo_runs_the_fleet_end_to_end_and_the_audit_passes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgebridge", "demo", "--state-dir", str(tmp_path / "brokers"),
         "--devices", "2", "--events", "300", "--rate", "300", "--timeout", "120"],
        capture_output=True, text=True, timeout=280,
    )
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


def test_demo_with_chaos_every_fault_kind_and_still_audits_clean(tmp_path: Path) -> None:
    """Six rounds, one of each kind (simulators.chaos): kill -9 of bridge, enricher, an agent and
    Mosquitto, Kafka frozen and killed; the audit must come out complete, exactly once, gap-free."""
    result = subprocess.run(
        [sys.executable, "-m", "edgebridge", "demo", "--state-dir", str(tmp_path / "brokers"),
         "--devices", "2", "--events", "3000", "--rate", "300", "--timeout", "240",
         "--chaos", "--seed", "3", "--rounds", "6"],
        capture_output=True, text=True, timeout=290,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    injected = [line.split(":", 1)[1].split()[0] for line in out.splitlines()
                if line.strip().startswith("chaos t=")]
    assert sorted(set(injected) - {"thaw-kafka"}) == sorted(FAULTS), out
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
