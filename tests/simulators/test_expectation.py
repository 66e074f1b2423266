"""The checker of a fleet's expectation file: a lost seq, a duplicate and a stray record are each
reported, an announced gap is not a loss, other devices' traffic is left out."""

from __future__ import annotations

from pathlib import Path

import orjson

from simulators.expectation import Expectation, check, format_checks


def _event(device: str, epoch: str, seq: int) -> bytes:
    return orjson.dumps({"deviceid": device, "epoch": epoch, "seq": seq})


def _expectation() -> Expectation:
    return Expectation("devices", {
        "dev-a": {"e1": {"committed": [(1, 10)], "gaps": [(4, 5)]}},
        "dev-b": {"e2": {"committed": [(1, 3)], "gaps": []}},
    })


def test_a_lost_seq_a_duplicate_and_a_stray_record_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    _expectation().write(path)
    expectation = Expectation.read(path)  # through the file, as the audit command reads it
    values = [_event("dev-a", "e1", s) for s in (1, 2, 3, 3, 6, 8, 9, 10)]  # 7 lost, 3 twice, 4-5 a gap
    values += [_event("dev-a", "e1", 11), _event("dev-a", "old", 1)]  # outside what it committed
    values += [_event("dev-b", "e2", s) for s in (1, 2, 3)]
    values += [_event("other", "x", 1), _event("other", "x", 1)]  # not in the file: ignored
    checks = check(expectation, values)
    a, b = checks["dev-a"], checks["dev-b"]
    assert (a.lost, a.duplicated, a.unexpected, a.received, a.committed) == ([(7, 7)], 1, 2, 8, 10)
    assert not a.ok
    assert (b.lost, b.duplicated, b.unexpected, b.ok) == ([], 0, 0, True)
    assert set(checks) == {"dev-a", "dev-b"}
    table = format_checks(checks)
    assert "dev-a" in table and "dev-b" not in table  # only devices with a problem get a row
    assert "lost 1, duplicated 1, unexpected 2" in table


def test_everything_once_is_clean_and_a_silent_device_is_all_lost() -> None:
    expectation = _expectation()
    values = [_event("dev-a", "e1", s) for s in (1, 2, 3, 6, 7, 8, 9, 10)]
    checks = check(expectation, values)
    assert checks["dev-a"].ok and checks["dev-a"].lost == []
    assert checks["dev-b"].lost == [(1, 3)] and checks["dev-b"].received == 0
    assert expectation.committed() == 13
