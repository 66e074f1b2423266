"""edgebridge.retry (and edgebridge.lifecycle): capped full-jitter backoff that shutdown interrupts."""

from __future__ import annotations

import logging
import random
import signal
import threading

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from edgebridge.errors import ShutdownRequested
from edgebridge.lifecycle import install_stop_handlers
from edgebridge.retry import Backoff, backoff_wait, retrying


class FakeEvent:
    """A stop event whose ``wait`` never blocks: it records the timeout and reports ``set_after`` waits."""

    def __init__(self, set_after: int | None = None) -> None:
        self.waits: list[float | None] = []
        self.set_after = set_after
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self.set_after is not None and len(self.waits) >= self.set_after:
            self._set = True
        return self._set


class Flaky:
    def __init__(self, failures: int, exc: type[Exception] = ConnectionError) -> None:
        self.calls = 0
        self.failures = failures
        self.exc = exc

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return "connected"


# -- Backoff -------------------------------------------------------------------------------------------


class MaxRng(random.Random):
    """Always picks the top of the interval, to see the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(0.5, 4.0, rng=MaxRng())
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=0, max_value=2**32))
def test_backoff_delays_within_full_jitter_bounds(attempts: int, seed: int) -> None:
    backoff = Backoff(0.1, 30.0, rng=random.Random(seed))
    for _ in range(attempts):
        backoff.next_delay()  # never overflows, however long the outage
    ceiling = min(30.0, 0.1 * 2.0**backoff.attempt)
    assert 0.0 <= backoff.next_delay() <= ceiling


def test_backoff_is_jittered() -> None:
    delays = {Backoff(1.0, 10.0, rng=random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) == 20


def test_backoff_wait_reports_stop() -> None:
    backoff = Backoff(0.5, 4.0, rng=MaxRng())
    event = FakeEvent(set_after=3)
    assert backoff.wait(event) is True
    assert backoff.wait(event) is True
    assert backoff.wait(event) is False  # stopped during the third wait
    assert event.waits == [0.5, 1.0, 2.0]


def test_backoff_wait_returns_at_once_when_already_stopped() -> None:
    stop = threading.Event()
    stop.set()
    assert Backoff(1000.0, 1000.0).wait(stop) is False


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_backoff_rejects_bad_bounds(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum)
    with pytest.raises(ValueError):
        backoff_wait(initial, maximum)


# -- retrying ------------------------------------------------------------------------------------------


def test_retrying_retries_until_success_with_capped_jittered_delays() -> None:
    delays: list[float] = []
    flaky = Flaky(failures=6)
    result = retrying(FakeEvent(), initial=0.5, maximum=4.0, sleep=delays.append)(flaky)
    assert result == "connected" and flaky.calls == 7
    assert len(delays) == 6
    for attempt, delay in enumerate(delays):
        assert 0.0 <= delay <= min(4.0, 0.5 * 2**attempt)


def test_retrying_sleeps_on_the_stop_event() -> None:
    event = FakeEvent()
    assert retrying(event, initial=1.0, maximum=1.0)(Flaky(failures=2)) == "connected"
    assert len(event.waits) == 2 and all(w is not None and 0.0 <= w <= 1.0 for w in event.waits)


def test_shutdown_interrupts_the_wait_and_raises() -> None:
    event = FakeEvent(set_after=2)
    flaky = Flaky(failures=100)
    with pytest.raises(ShutdownRequested):
        retrying(event, initial=0.1, maximum=1.0)(flaky)
    assert flaky.calls == 2  # no attempt after the interrupted wait


def test_shutdown_with_injected_sleep() -> None:
    event = FakeEvent()

    def sleep(seconds: float) -> None:
        event.set()  # stop arrives while sleeping

    flaky = Flaky(failures=100)
    with pytest.raises(ShutdownRequested):
        retrying(event, sleep=sleep)(flaky)
    assert flaky.calls == 1


def test_real_event_interrupts_a_long_wait() -> None:
    stop = threading.Event()
    stop.set()
    flaky = Flaky(failures=100)
    with pytest.raises(ShutdownRequested):
        retrying(stop, initial=3600.0, maximum=3600.0)(flaky)  # would hang if the wait were a sleep
    assert flaky.calls == 1


def test_max_attempts_reraises_the_last_error() -> None:
    flaky = Flaky(failures=100)
    with pytest.raises(ConnectionError, match="failure 3"):
        retrying(FakeEvent(), max_attempts=3, sleep=lambda s: None)(flaky)
    assert flaky.calls == 3


def test_only_retry_on_given_types() -> None:
    flaky = Flaky(failures=1, exc=KeyError)
    with pytest.raises(KeyError):
        retrying(FakeEvent(), retry_on=(ConnectionError,), sleep=lambda s: None)(flaky)
    assert flaky.calls == 1


def test_shutdown_raised_by_the_attempt_is_not_retried() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise ShutdownRequested("stopping")

    with pytest.raises(ShutdownRequested):
        retrying(FakeEvent(), sleep=lambda s: None)(attempt)
    assert len(calls) == 1


def test_iteration_form_and_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "edgebridge.test.retry")
    flaky = Flaky(failures=2)
    log = logging.getLogger("edgebridge.test.retry")
    for attempt in retrying(FakeEvent(), retry_on=ConnectionError, sleep=lambda s: None, logger=log):
        with attempt:
            result = flaky()
    assert result == "connected"
    assert [getattr(r, "attempt", None) for r in caplog.records] == [1, 2]
    assert "failure 1" in getattr(caplog.records[0], "error", "")


def test_retrying_is_a_tenacity_retrying() -> None:
    assert isinstance(retrying(FakeEvent()), tenacity.Retrying)
    with pytest.raises(ValueError):
        retrying(FakeEvent(), max_attempts=0)


# -- lifecycle: signal handlers only set the stop event ------------------------------------------------


def test_sigterm_sets_the_event_and_restore_puts_back_the_old_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    restore = install_stop_handlers(stop)
    try:
        signal.raise_signal(signal.SIGTERM)
        assert stop.is_set()
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_stop_callable_and_custom_signals() -> None:
    calls: list[str] = []
    before = signal.getsignal(signal.SIGUSR1)
    restore = install_stop_handlers(lambda: calls.append("stop"), signals=(signal.SIGUSR1,))
    try:
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR1)
    finally:
        restore()
    assert calls == ["stop", "stop"]
    assert signal.getsignal(signal.SIGUSR1) == before
