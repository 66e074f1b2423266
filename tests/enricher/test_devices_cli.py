"""`edgebridge devices` against the real Kafka: what put writes, get reads back; bad ids never reach it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BrokerAddresses
from tests.enricher.conftest import COMPACT, ROOT

pytestmark = pytest.mark.brokers


def test_put_then_get_and_a_bad_id_in_an_import_file(
    brokers: BrokerAddresses, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    env = {**os.environ, "EDGEBRIDGE_KAFKA_BOOTSTRAP": brokers.kafka_bootstrap,
           "EDGEBRIDGE_TOPICS_DEVICES": kafka_topic("devices", 1, COMPACT)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edgebridge", "devices", *args], capture_output=True,
                              text=True, timeout=90, env=env, cwd=ROOT)

    put = run("put", "pump-7", "--json", '{"site": "a", "model": "m1"}', "--site", "b")
    assert put.returncode == 0, put.stderr
    got = run("get", "pump-7")
    assert got.returncode == 0, got.stderr
    assert {k: v for k, v in json.loads(got.stdout).items() if v} == {"site": "b", "model": "m1"}
    devices = tmp_path / "devices.json"
    devices.write_text(json.dumps({"pump-8": {"site": "c"}, "../etc": {"site": "d"}}))
    refused = run("import", str(devices))
    assert refused.returncode == 1 and "../etc: not a valid device id" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert run("get", "pump-8").returncode == 1  # nothing of the refused file was written
