"""What a fleet run committed, and the check of a Kafka topic against it: :mod:`edgebridge.ops.expectation`.

The file's format and the check live with the operator's tools, so that ``edgebridge audit --expect``
and ``edgebridge simulate audit`` are one code; the simulator writes the file (``Expectation.of``).
"""

from __future__ import annotations

from edgebridge.ops.expectation import (
    DeviceCheck,
    Expectation,
    check,
    check_keys,
    format_checks,
    format_faults,
)

__all__ = ["DeviceCheck", "Expectation", "check", "check_keys", "format_checks", "format_faults"]
