"""The checker of a fleet's expectation file: a lost seq, a duplicate and a stray record are each
reported, an announced gap is not a loss, other devices' traffic is left out."""

from __future__ import annotations

from pathlib import Path

import orjson

from simulators.expectation import Expectation, check, format_checks, format_faults


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


def test_refused_seqs_are_not_expected_and_wiped_ones_are_lost_only_if_absent(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    Expectation("devices", {
        # a full disk refused 5-7 (burnt, never committed); the gap event 8 announced them
        "full": {"e1": {"committed": [(1, 4), (8, 10)], "gaps": [(5, 7)], "refused": [(5, 7)], "wiped": []}},
        # reflashed: rows 9-10 were still on the device when it was wiped; a new life from seq 1
        "flash": {"old": {"committed": [(1, 10)], "gaps": [], "refused": [], "wiped": [(9, 10)]},
                  "new": {"committed": [(1, 3)], "gaps": [], "refused": [], "wiped": []}},
    }, [{"at": 1.0, "kind": "diskfull", "devices": ["full"], "detail": ""},
        {"at": 2.0, "kind": "reflash", "devices": ["flash"], "detail": ""},
        {"at": 3.0, "kind": "reflash", "devices": ["gone"], "detail": ""}]).write(path)
    expectation = Expectation.read(path)
    values = [_event("full", "e1", s) for s in (1, 2, 3, 4, 8, 9, 10)]
    values += [_event("flash", "old", s) for s in range(1, 10)]  # 9 arrived before the wipe, 10 did not
    values += [_event("flash", "new", s) for s in (1, 2, 3, 3)]
    checks = check(expectation, values)
    full, flash = checks["full"], checks["flash"]
    assert (full.ok, full.refused, full.committed, full.received) == (True, 3, 7, 7)
    assert (flash.lost, flash.wiped, flash.wiped_lost, flash.epochs, flash.duplicated) == ([], 2, 1, 2, 1)
    assert "refused 3, wiped 2, wiped lost 1" in format_checks(checks)
    lines = format_faults(expectation, checks).splitlines()
    assert lines == [
        "fault diskfull: 1 times, 1 devices (1 epochs): refused 3, wiped 0 (lost 0), held 7, lost 0, "
        "duplicated 0",
        "fault reflash: 2 times, 1 devices (2 epochs): refused 0, wiped 2 (lost 1), held 12, lost 0, "
        "duplicated 1",
    ]
