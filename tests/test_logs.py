"""edgebridge.logs: one line per event, logfmt or JSON, secrets masked, rate limiting."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebridge import logs
from edgebridge.config import Secret
from edgebridge.logs import JsonFormatter, LogfmtFormatter, rate_limited, setup_logging


def record(
    msg: str = "hello", *args: object, extra: dict[str, object] | None = None, **kw: object
) -> logging.LogRecord:
    logger = logging.getLogger("edgebridge.test")
    rec = logger.makeRecord("edgebridge.test", logging.INFO, __file__, 1, msg, args, None, extra=extra)
    for key, value in kw.items():
        setattr(rec, key, value)
    rec.created = 1714564800.123456  # 2024-05-01T12:00:00.123Z
    return rec


def logfmt(rec: logging.LogRecord) -> str:
    return LogfmtFormatter().format(rec)


def test_logfmt_fields_in_order() -> None:
    line = logfmt(record("sensor line rejected", extra={"port": "/dev/ttyUSB0", "count": 3, "ok": False}))
    assert line == (
        'ts=2024-05-01T12:00:00.123Z level=info logger=edgebridge.test msg="sensor line rejected" '
        "port=/dev/ttyUSB0 count=3 ok=false"
    )


def test_logfmt_quotes_and_escapes() -> None:
    line = logfmt(record("x", extra={"line": 'a "b"\\c\nd', "empty": "", "eq": "a=b", "none": None}))
    assert r'line="a \"b\"\\c\nd"' in line
    assert 'empty=""' in line and 'eq="a=b"' in line and "none=null" in line


def test_percent_args_are_formatted() -> None:
    assert 'msg="3 events from dev-1"' in logfmt(record("%d events from %s", 3, "dev-1"))


def test_exception_on_the_same_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = logfmt(rec)
    assert "\n" not in line
    assert 'exc="Traceback (most recent call last):\\n' in line
    assert "ValueError: boom\\nsecond line" in line


def test_extra_cannot_overwrite_standard_fields() -> None:
    line = logfmt(record("m", extra={"ts": "mine", "level": "x"}))
    assert line.startswith("ts=2024-05-01T12:00:00.123Z level=info ")
    assert "extra.ts=mine extra.level=x" in line


def test_secrets_masked_everywhere() -> None:
    pw = Secret("hunter2")
    recs = [
        record("login with %s", pw),
        record("m", extra={"password": pw}),
        record("m", extra={"password": "plain-hunter2"}),
        record("m", extra={"conf": {"sasl.password": "hunter2", "linger.ms": 5}}),
        record("conf %s", {"sasl.password": "hunter2", "nested": {"api_token": "hunter2"}}),
        record("m", extra={"items": [pw]}),
    ]
    for rec in recs:
        for formatter in (LogfmtFormatter(), JsonFormatter()):
            out = formatter.format(rec)
            assert "hunter2" not in out, out
            assert "***" in out


def test_json_format() -> None:
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        rec = record("hello\u2028world", extra={"n": 1, "pw": Secret("x")})
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert len(line.splitlines()) == 1
    event = json.loads(line)
    assert event["ts"] == "2024-05-01T12:00:00.123Z"
    assert event["level"] == "info" and event["logger"] == "edgebridge.test"
    assert event["msg"] == "hello\u2028world" and event["n"] == 1 and event["pw"] == "***"
    assert "RuntimeError: bad" in event["exc"]


@given(st.text(), st.text())
def test_logfmt_is_always_one_line(msg: str, value: str) -> None:
    line = logfmt(record(msg.replace("%", "%%"), extra={"v": value}))
    assert len(line.splitlines()) == 1


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_setup_logging_is_idempotent() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("debug", "logfmt", first)
    setup_logging("INFO", "json", second)
    log = logging.getLogger("edgebridge.setup")
    log.debug("hidden")
    log.info("shown", extra={"k": "v"})
    assert first.getvalue() == ""
    lines = second.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["k"] == "v"


@pytest.mark.usefixtures("restore_root")
def test_setup_logging_rejects_unknown_level_and_format() -> None:
    with pytest.raises(ValueError, match="level"):
        setup_logging("LOUD")
    with pytest.raises(ValueError, match="format"):
        setup_logging("INFO", "xml")  # type: ignore[arg-type]


# -- rate limiting -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The rate limiter's clock, so that tests never sleep (and a limiter of the test's own)."""
    clock = Clock()
    monkeypatch.setattr(logs, "_shared_limiter", logs._Limiter(clock, max_keys=4096))
    return clock


def test_rate_limited_counts_suppressed(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    log = logging.getLogger("edgebridge.rl")
    caplog.set_level(logging.INFO, "edgebridge.rl")
    out = []  # after each call: whether its record went out
    for key, message, extra, later in [
        ("bad-line", "bad sensor line", {"line": "a"}, 0.0),
        ("bad-line", "bad sensor line", None, 0.0),
        ("bad-line", "bad sensor line", None, 0.0),
        ("other", "other problem", None, 10.0),  # keys are independent
        ("bad-line", "bad sensor line", {"line": "b"}, 10.0),
        ("bad-line", "bad sensor line", None, 0.0),
    ]:
        before = len(caplog.records)
        rate_limited(log, key, 10.0).warning(message, extra=extra)
        out.append(len(caplog.records) > before)
        clock.now += later
    assert out == [True, False, False, True, True, True]
    rows = [
        (r.getMessage(), getattr(r, "suppressed", None), getattr(r, "line", None)) for r in caplog.records
    ]
    assert rows == [
        ("bad sensor line", None, "a"),
        ("other problem", None, None),
        ("bad sensor line", 2, "b"),
        ("bad sensor line", None, None),
    ]
    assert all(r.funcName == "test_rate_limited_counts_suppressed" for r in caplog.records)


def test_rate_limited_ignores_disabled_levels(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    log = logging.getLogger("edgebridge.rl2")
    caplog.set_level(logging.INFO, "edgebridge.rl2")
    rate_limited(log, "k", 10.0).debug("not counted")
    assert caplog.records == []
    rate_limited(log, "k", 10.0).info("first")  # the debug record did not use up the interval
    assert [r.getMessage() for r in caplog.records] == ["first"]
    assert not hasattr(caplog.records[0], "suppressed")


def test_rate_limited_bounds_its_keys(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_shared_limiter", logs._Limiter(Clock(), max_keys=2))
    log = logging.getLogger("edgebridge.rl3")
    caplog.set_level(logging.INFO, "edgebridge.rl3")
    for key in ("a", "b", "c"):
        rate_limited(log, key, 10.0).error("x")
    assert len(caplog.records) == 3
    rate_limited(log, "a", 10.0).error("x")  # "a" was forgotten, so it is admitted again
    assert len(caplog.records) == 4
    rate_limited(log, "c", 10.0).error("x")
    assert len(caplog.records) == 4


def test_rate_limited_renders_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "edgebridge.rl4")
    log = logging.getLogger("edgebridge.rl4")
    for _ in range(3):
        rate_limited(log, "bad-line", 3600.0).warning("bad sensor line", extra={"line": "x"})
    assert len(caplog.records) == 1
    assert caplog.records[0].line == "x"  # type: ignore[attr-defined]
    assert "suppressed" not in logfmt(caplog.records[0])
    # a zero interval always admits, and reports the two suppressed above
    rate_limited(log, "bad-line", 0.0).warning("bad sensor line")
    assert "suppressed=2" in logfmt(caplog.records[1])
