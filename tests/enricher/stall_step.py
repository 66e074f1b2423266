"""A pipeline step that stalls the enricher's loop for real: it blocks while the file named by
``EDGEBRIDGE_TEST_STALL_FILE`` exists (``[pipeline] steps = [..., "tests.enricher.stall_step:step"]``)."""

from __future__ import annotations

import os
import time
from typing import Any


def step(item: Any, ctx: Any) -> Any:
    path = os.environ.get("EDGEBRIDGE_TEST_STALL_FILE")
    while path and os.path.exists(path):
        time.sleep(0.05)
    return item
