"""Helpers the benchmarks share (not a scenario: `make bench` skips this module)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["thread_cpu"]


def thread_cpu(names: Mapping[int, str] | None = None) -> dict[str, float]:
    """CPU seconds so far of this process's threads, summed by name: ``names`` (native id -> name)
    first, else the kernel's thread name (librdkafka names its threads, ``rdk:broker1`` ...)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # the thread ended
            continue
        name = (names or {}).get(int(tid)) or stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out
