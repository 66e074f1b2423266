"""Pipeline steps: small functions behind one tiny protocol, run in the configured order.

A step is any callable ``step(item, ctx) -> Item | None``:

- return the item (changed in place or not) to pass it on;
- return ``None`` to drop it (only ``dedup`` does: a duplicate is not an error);
- raise :class:`Reject` to send the event to the dead letters with a reason code;
- raise anything else and the event goes to the dead letters as ``step_failed`` with the error's class
  and text; the stream continues with the next event.

Built-in names: ``validate``, ``dedup``, ``calibrate``, ``normalise``, ``derive``, ``flag``, ``route``.
Your own: ``"package.module:callable"`` in ``[pipeline] steps``. Steps that transform readings leave
gap events (``edgebridge.gap.v1``) alone; ``dedup`` handles both.

The default chain, exactly as configured by default, runs fused (:mod:`enricher.steps.fused`: one call,
two passes over the readings, the same results); any other list runs step by step, as written above.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from edgebridge.envelope import READING_TYPE, Event, device_types
from edgebridge.errors import ConfigError, EdgeBridgeError
from enricher.config import DEFAULT_STEPS, PipelineSettings
from enricher.dedup import DedupTable
from enricher.registry import DeviceInfo

__all__ = ["Context", "FusedPipeline", "Item", "Pipeline", "Reject", "Step", "StepFailed", "build_pipeline"]


class Reject(EdgeBridgeError):
    """A step refuses an event on purpose: it goes to the dead letters with ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StepFailed(EdgeBridgeError):
    """A step raised something else; ``.step`` names it, ``__cause__`` is the original error."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"step {step} failed: {type(error).__name__}: {error}")
        self.step = step
        self.error = error


@dataclass(slots=True)
class Item:
    """One event on its way through the pipeline, plus what the steps found out."""

    event: Event
    key: str | None = None  # the Kafka key (device id) it arrived with
    ingest_ms: int | None = None  # the Kafka timestamp of the raw record
    device: DeviceInfo | None = None
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    derived: dict[str, dict[str, Any]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    late: bool = False
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_reading(self) -> bool:
        return self.event.type == READING_TYPE


class DeviceLookup(Protocol):
    def get(self, deviceid: str) -> DeviceInfo | None: ...


@dataclass
class Stats:
    """What the steps count, per transaction: the checkpoint moves it into the metrics when the
    transaction commits and forgets it when it aborts."""

    duplicates: int = 0
    late: int = 0
    gaps_opened: int = 0
    gaps_closed: int = 0
    gaps_explained: int = 0
    seqs_expired: int = 0
    unregistered: int = 0
    epoch_changes: int = 0  # devices that lost their state: a new epoch after an old one
    epochs_forgotten_idle: int = 0
    epochs_forgotten_over_cap: int = 0

    def take(self) -> Stats:
        """The counts so far; from now on counting starts from zero."""
        taken = replace(self)
        self.clear()
        return taken

    def clear(self) -> None:
        for name in vars(self):
            setattr(self, name, 0)


class History:
    """Last value per (device, measurement) for rate and stuck flags: bounded, least recent evicted.

    In memory only, so after a restart or rebalance the first event of a device cannot be flagged for
    rate or stuck (documented: flags are advisory, the event itself is exactly once)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.evicted = 0
        # (device id, measurement) -> (event time, value, repeats); public for the fused chain's inlined swap
        self.entries: OrderedDict[tuple[str, str], tuple[float, Any, int]] = OrderedDict()

    def swap(self, key: tuple[str, str], entry: tuple[float, Any, int]) -> tuple[float, Any, int] | None:
        old = self.entries.pop(key, None)
        self.entries[key] = entry
        if len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
            self.evicted += 1
        return old


@dataclass
class Context:
    registry: DeviceLookup
    dedup: DedupTable
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    stats: Stats = field(default_factory=Stats)
    history: History = field(default_factory=History)
    partition: int = 0
    # the types admitted from raw, once per pipeline rather than a list scanned per event
    known_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.known_types = device_types(self.settings.known_types)


class Step(Protocol):
    def __call__(self, item: Item, ctx: Context) -> Item | None: ...


class Pipeline:
    def __init__(self, steps: list[tuple[str, Step]]) -> None:
        self.steps = steps

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def run(self, item: Item, ctx: Context) -> Item | None:
        """Run every step; raises :class:`Reject` or :class:`StepFailed`, returns ``None`` if dropped."""
        current: Item | None = item
        for name, step in self.steps:
            try:
                current = step(current, ctx)  # type: ignore[arg-type]
            except Reject:
                raise
            except Exception as exc:
                raise StepFailed(name, exc) from exc
            if current is None:
                return None
        return current


def _builtin(name: str) -> Step | None:
    from enricher.steps import alerts, calibrate, derive, flag, normalise, validate

    table: dict[str, Step] = {
        "validate": validate.validate,
        "dedup": validate.dedup,
        "calibrate": calibrate.calibrate,
        "normalise": normalise.normalise,
        "derive": derive.derive,
        "flag": flag.flag,
        "route": alerts.route,
    }
    return table.get(name)


def load_step(spec: str) -> Step:
    """A built-in name or ``module:callable``; :class:`ConfigError` if it cannot be found."""
    builtin = _builtin(spec)
    if builtin is not None:
        return builtin
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError("pipeline.steps", f"{spec!r} is neither a built-in step nor module:callable")
    try:
        obj: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("pipeline.steps", f"cannot load {spec!r}: {exc}") from exc
    if not callable(obj):
        raise ConfigError("pipeline.steps", f"{spec!r} is not callable")
    return obj


class FusedPipeline(Pipeline):
    """The default chain run as one function (:mod:`enricher.steps.fused`): same results, less work."""

    def __init__(self) -> None:
        from enricher.steps.fused import run_default

        super().__init__([(spec, load_step(spec)) for spec in DEFAULT_STEPS])
        self._run = run_default

    def run(self, item: Item, ctx: Context) -> Item | None:
        return self._run(item, ctx)


def build_pipeline(settings: PipelineSettings, fuse: bool = True) -> Pipeline:
    """The configured steps; the default chain fused unless ``fuse`` is false (tests compare the two)."""
    if fuse and list(settings.steps) == DEFAULT_STEPS:
        return FusedPipeline()
    return Pipeline([(spec, load_step(spec)) for spec in settings.steps])
