"""A Kafka call blocked past its own timeout (librdkafka#5456) ends the enricher instead of stalling it.

The hang itself is librdkafka's and shows only when Kafka goes away at one moment of a commit (about one
run in four of tests/e2e/test_long_outage.py before the watchdog); these tests pin what we do about it:
the deadline arithmetic with a fake exit, and in a real child process that ``os._exit`` ends it although
a thread-pool thread (the committer) is still blocked, where a normal exit would wait for that thread.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

import enricher.checkpoint as checkpoint
from enricher.hang_watchdog import EXIT_HUNG, Watchdog


def _watchdog(exits: list[int]) -> Watchdog:
    return Watchdog(grace=0.3, every=0.05, exit=exits.append)


def test_a_call_within_its_timeout_and_grace_is_left_alone() -> None:
    exits: list[int] = []
    dog = _watchdog(exits)
    with dog.guard("commit_transaction", 0.2):
        time.sleep(0.35)  # past its timeout, inside the grace: a slow machine, not a hang
    time.sleep(0.3)
    assert exits == [] and dog.fired is None and dog.overdue(time.monotonic()) == []


def test_a_call_past_its_deadline_ends_the_process() -> None:
    exits: list[int] = []
    dog = _watchdog(exits)
    release = threading.Event()

    def hung() -> None:
        with dog.guard("send_offsets_to_transaction", 0.1):
            release.wait(10)

    worker = threading.Thread(target=hung)
    worker.start()
    deadline = time.monotonic() + 5
    while not exits and time.monotonic() < deadline:
        time.sleep(0.02)
    release.set()
    worker.join()
    assert exits == [EXIT_HUNG] and dog.fired == "send_offsets_to_transaction"


def test_kafka_call_guards_every_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    dog = _watchdog(exits)
    monkeypatch.setattr(checkpoint, "WATCHDOG", dog)
    given: list[float] = []

    def blocks_past_its_timeout(seconds: float) -> str:
        given.append(seconds)
        time.sleep(seconds + 0.6)  # what librdkafka does in #5456: the timeout is not honoured
        return "late"

    assert checkpoint.kafka_call("send_offsets_to_transaction", blocks_past_its_timeout, within=1.0) == "late"
    assert given == [1.0]  # the call's own timeout (at least 1 s), the watchdog's base
    assert exits == [EXIT_HUNG] and dog.fired == "send_offsets_to_transaction"


CHILD = textwrap.dedent("""
    import logging, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from edgebridge.logs import setup_logging
    from enricher.hang_watchdog import Watchdog

    setup_logging("INFO", "logfmt")
    dog = Watchdog(grace=1.0, every=0.1)
    never = threading.Event()

    def commit():  # the committer thread, blocked as in librdkafka's cnd_wait
        with dog.guard("send_offsets_to_transaction", 0.5):
            never.wait()

    pool = ThreadPoolExecutor(1, thread_name_prefix="enricher-commit")
    print("started", flush=True)
    pool.submit(commit).result()  # the main thread waits for the commit, as settle() does
    print("not reached", flush=True)
""")


def test_a_hung_commit_thread_does_not_keep_the_process_alive() -> None:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - began
    assert done.stdout.splitlines() == ["started"], done.stdout
    assert done.returncode == EXIT_HUNG, done.stderr
    assert "kafka call hung past its timeout" in done.stderr and "send_offsets_to_transaction" in done.stderr
    assert took < 30, f"exited only after {took:.0f} s"
