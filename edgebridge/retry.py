"""The one retry policy: capped, full-jitter exponential backoff that a shutdown interrupts at once.

Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): attempt ``n`` (from 0) waits
``uniform(0, min(maximum, initial * 2**n))``. Jitter keeps a fleet of devices that lost the same broker
from reconnecting in lockstep; the cap keeps an outage of hours from growing into hour-long waits.

Two shapes, same delays:

- :func:`retrying` wraps a call in a ``tenacity.Retrying`` whose sleep waits on the stop event::

      for attempt in retrying(stop, initial=0.5, maximum=30.0, retry_on=(OSError,)):
          with attempt:
              client.connect(host, port)

- :class:`Backoff` for hand-written reconnect loops (paho's, librdkafka's)::

      backoff = Backoff(initial=0.5, maximum=30.0)
      while not stop.is_set():
          try:
              session = connect()
          except OSError:
              if not backoff.wait(stop):
                  break                       # shutting down
              continue
          backoff.reset()
          session.run()

Both take ``sleep``/``rng`` so tests never sleep.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Protocol

import tenacity

from edgebridge.errors import ShutdownRequested

__all__ = ["Backoff", "StopEvent", "backoff_wait", "retrying"]


class StopEvent(Protocol):
    """What a ``threading.Event`` offers that the waits here need."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def _check(initial: float, maximum: float) -> None:
    if not 0 < initial <= maximum:
        raise ValueError(f"need 0 < initial <= maximum, got initial={initial}, maximum={maximum}")


def backoff_wait(initial: float = 0.5, maximum: float = 30.0) -> tenacity.wait.wait_base:
    """tenacity wait strategy: full jitter, ``uniform(0, min(maximum, initial * 2**(attempt - 1)))``."""
    _check(initial, maximum)
    return tenacity.wait_random_exponential(multiplier=initial, max=maximum)


def retrying(
    stop_event: StopEvent,
    *,
    initial: float = 0.5,
    maximum: float = 30.0,
    max_attempts: int | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    sleep: Callable[[float], None] | None = None,
    logger: logging.Logger | None = None,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` with the edgebridge policy.

    - Retries exceptions of type ``retry_on`` (never :class:`ShutdownRequested`) with :func:`backoff_wait`.
    - Gives up after ``max_attempts`` attempts (``None``: never) and re-raises the last error itself,
      not a ``tenacity.RetryError``.
    - Sleeps on ``stop_event.wait``, so setting the event ends the wait at once; instead of another
      attempt, :class:`ShutdownRequested` is raised. The first attempt always runs.
    - ``sleep`` replaces the wait (tests); the event is still checked before and after it.
    - ``logger`` gets a warning before each sleep with ``attempt``, ``delay`` and ``error``.
    """
    if max_attempts is not None and max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")

    def interruptible_sleep(seconds: float) -> None:
        if sleep is None:
            stopped = stop_event.wait(seconds)
        elif stop_event.is_set():
            stopped = True
        else:
            sleep(seconds)
            stopped = stop_event.is_set()
        if stopped:
            raise ShutdownRequested("shutdown requested during retry backoff")

    before_sleep = None
    if logger is not None:
        log = logger

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "retrying after error",
                extra={"attempt": state.attempt_number, "delay": round(delay, 3), "error": repr(error)},
            )

    return tenacity.Retrying(
        sleep=interruptible_sleep,
        stop=tenacity.stop_after_attempt(max_attempts) if max_attempts else tenacity.stop_never,
        wait=backoff_wait(initial, maximum),
        retry=tenacity.retry_if_exception_type(retry_on)
        & tenacity.retry_if_not_exception_type(ShutdownRequested),
        before_sleep=before_sleep,
        reraise=True,
    )


class Backoff:
    """Full-jitter delays for a reconnect loop: ``next_delay()`` is ``uniform(0, min(maximum,
    initial * 2**attempt))`` and advances ``attempt``; ``reset()`` after a success starts over."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, rng: random.Random | None = None) -> None:
        _check(initial, maximum)
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng if rng is not None else random.Random()

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        return min(self.maximum, self.initial * 2.0**self.attempt)

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        # stop counting once capped: 2.0**attempt would overflow after ~1000 failures
        if ceiling < self.maximum:
            self.attempt += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0

    def wait(self, stop_event: StopEvent) -> bool:
        """Wait the next delay on ``stop_event``: ``True`` when it elapsed (try again), ``False`` when
        the event was set (stop). Never raises, so loops can end without catching anything."""
        return not stop_event.wait(self.next_delay())
