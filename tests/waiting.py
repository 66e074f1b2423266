"""Waiting for a condition in a test: the one helper every test package uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_for"]


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str = "condition", every: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns something true (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
