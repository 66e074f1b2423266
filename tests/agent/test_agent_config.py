"""The agent's configuration: a bad value stops the start with an error that names its own key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edgebridge.config import load_config
from edgebridge.errors import ConfigError


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("outbox.seq_block", 0, "must be at least 1"),
        ("outbox.min_free_bytes", -1, "must not be negative"),
        ("outbox.commit_every_events", 0, "must be at least 1"),
        ("outbox.max_rows", 9, "must be at least 10"),
    ],
)
def test_a_bad_outbox_value_is_reported_under_its_own_key(
    setting: str, value: int, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(AgentConfig, env={}, overrides={"device_id": "d1", "state_dir": str(tmp_path),
                                                    setting: value})
    assert info.value.key == setting
    assert message in str(info.value)
