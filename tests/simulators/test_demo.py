"""The README's main job, `edgebridge demo`, end to end on brokers of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_demo_with_chaos_kills_bridge_enricher_and_an_agent_and_still_audits_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgebridge", "demo", "--state-dir", str(tmp_path / "brokers"),
         "--devices", "2", "--events", "900", "--rate", "300", "--timeout", "180", "--chaos"],
        capture_output=True, text=True, timeout=280,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for victim in ("bridge", "enricher", "-01"):
        assert any(line.strip().startswith("chaos") and "kill -9 " in line and victim in line
                   for line in out.splitlines()), (victim, out)
    assert "raw: complete" in out
    assert "processed: complete, exactly once" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("demo-")]
    processed = rows[2:]
    # The killed agent's source started anew after its restart: more than 900 events for it.
    assert int(processed[0][3]) > 900 and int(processed[1][3]) == 900, rows
    assert all(row[4] == "0" and row[-1] == "none" for row in processed), rows
