"""A Kafka call that outlives its own timeout ends the process, rather than stalling the pipeline.

librdkafka's ``send_offsets_to_transaction`` can block past its timeout, forever, when the group
coordinator goes away during the call (confluentinc/librdkafka#5456 and #5511, open on 2.16: the
coordinator request's timeout is never checked). Seen here when Kafka stopped mid-commit: after Kafka
came back the enricher had its partitions assigned and its committer thread still waited inside the call
(``py-spy dump --native``: ``rd_kafka_txn_op_req0`` -> ``cnd_wait``), and nothing was processed any more:
about one run in four of ``tests/e2e/test_long_outage.py``.

A thread blocked in C cannot be interrupted, and a clean exit would wait for it too (the committer thread
is joined at exit; closing the clients waits on the same handle). So each guarded call gets a deadline,
its own timeout plus a grace; past it the watchdog logs the call as hung and ends the process with
``os._exit(1)``, the exit status of a fatal Kafka error. The supervisor (systemd, compose) restarts it,
and the restart's ``init_transactions`` fences and aborts the open transaction: nothing committed is
lost, nothing uncommitted was visible, and the stall lasts one deadline instead of for ever.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["EXIT_HUNG", "GRACE", "WATCHDOG", "Watchdog"]

log = logging.getLogger("enricher.watchdog")

EXIT_HUNG = 1  # as a fatal Kafka error: the supervisor restarts us
# beyond a call's own timeout: a call that honours its timeout returns well inside this, even on a
# loaded machine; a hung one costs at most its timeout plus this
GRACE = 30.0


class Watchdog:
    """Deadlines of the calls in progress, any thread; one daemon thread checks them."""

    def __init__(self, grace: float = GRACE, every: float = 1.0,
                 exit: Callable[[int], object] = os._exit) -> None:
        self.grace = grace
        self._every = every
        self._exit = exit
        self._ids = itertools.count()
        self._calls: dict[int, tuple[str, float, float]] = {}  # id -> (what, started, deadline)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.fired: str | None = None  # what was declared hung (the exit function may return, in tests)

    @contextmanager
    def guard(self, what: str, seconds: float) -> Iterator[None]:
        """The block must end within ``seconds`` (its own timeout) plus the grace."""
        token = next(self._ids)
        now = time.monotonic()
        with self._lock:
            self._calls[token] = (what, now, now + seconds + self.grace)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="kafka-call-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                del self._calls[token]

    def overdue(self, now: float) -> list[tuple[str, float]]:
        """``(what, seconds since it began)`` of every call past its deadline."""
        with self._lock:
            calls = list(self._calls.values())
        return [(what, now - started) for what, started, deadline in calls if now > deadline]

    def _watch(self) -> None:
        while self.fired is None:
            time.sleep(self._every)
            hung = self.overdue(time.monotonic())
            if hung:
                what, seconds = hung[0]
                self.fired = what
                log.critical("kafka call hung past its timeout, exiting for a restart (librdkafka#5456)",
                             extra={"call": what, "seconds": round(seconds, 1)})
                for handler in logging.getLogger().handlers:
                    handler.flush()
                self._exit(EXIT_HUNG)


WATCHDOG = Watchdog()  # the process's one watchdog: kafka_call and the processor's close use it
