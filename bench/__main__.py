"""`make bench`: run every benchmark scenario in turn (each is also runnable alone).

Each scenario starts its own brokers, runs its baseline in the same run, repeats at least three times
and prints medians and the ratio; copy the figures into bench/RESULTS.md with the machine and commit.
"""

from __future__ import annotations

import pkgutil
import runpy
import sys
from pathlib import Path

SCENARIOS = sorted(
    m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
    # Not scenarios: shared helpers, the profiling tools (the profiler, the hot-path A/B harness, the
    # Kafka floor), and the Quix app (it runs in bench/.venv-quix).
    if not m.name.startswith("_")
    and m.name not in ("common", "enricher_profile", "enricher_hotpath", "kafka_eos_floor",
                       "enricher_quix_app")
)


def main() -> int:
    only = sys.argv[1:]
    for name in SCENARIOS:
        if only and name not in only:
            continue
        print(f"==> bench.{name}", flush=True)
        saved = sys.argv
        sys.argv = [f"bench.{name}"]
        try:
            runpy.run_module(f"bench.{name}", run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                print(f"bench.{name} exited with {exc.code}", file=sys.stderr)
                return 1
        finally:
            sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
