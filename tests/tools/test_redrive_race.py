"""Two ``edgebridge deadletters redrive`` processes at once over the same dead letters.

Each dead letter must reach the raw topic exactly once (counted by its ``redriven_from`` header with a
separate read_committed reader), with exactly one committed marker; of the two redrives, one moves them
and the other finds nothing left (``already redriven``) or is fenced by the other's
``init_transactions`` and says so in one line (exit 1, no traceback, nothing of it written).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter

import pytest

from edgebridge import deadletters, envelope
from simulators.audit import read_records
from tests.tools.conftest import Tools, produce

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(600)]

LETTERS = 1500  # enough that each redrive's read and transaction take a while, so the two overlap
SUMMARY = re.compile(r"^redriven (\d+), already redriven (\d+), not redriven 0 \(of (\d+) selected\)", re.M)
FENCED = "fenced by another redrive"


def _dead_letters(tools: Tools, count: int) -> None:
    """``count`` step_failed dead letters of ten devices, at offsets 0 .. count-1 of partition 0."""
    reading = {"t": {"v": 1, "u": "Cel"}}
    letters = [(f"dev-{i % 10}".encode(),
                envelope.encode(envelope.new_reading(f"dev-{i % 10}", 1 + i // 10, reading, epoch="e1")),
                deadletters.headers(reason="step_failed", error=ZeroDivisionError("division by zero"),
                                    component="enricher", original=(tools.topics.raw, 0, i), step="s:ratio"))
               for i in range(count)]
    produce(tools.bootstrap, tools.topics.deadletter, letters, partition=0)


def _each_once(tools: Tools, count: int) -> None:
    """Counted independently (read_committed): each dead letter once in raw, one marker each."""
    raw = read_records(tools.bootstrap, tools.topics.raw, idle=1.0)
    origins = Counter((dict(r.headers).get("redriven_from") or b"").decode() for r in raw)
    assert origins == Counter({f"{tools.topics.deadletter}/0/{i}": 1 for i in range(count)})
    markers = read_records(tools.bootstrap, tools.marker_topic, idle=1.0)
    assert Counter((m.key or b"").decode() for m in markers) == origins


def test_two_redrives_at_once_move_each_dead_letter_once(tools: Tools) -> None:
    _dead_letters(tools, LETTERS)

    first = tools.popen("deadletters", "redrive", "--reason", "step_failed")
    time.sleep(0.3)
    assert first.poll() is None  # the fault: the second starts while the first runs
    second = tools.popen("deadletters", "redrive", "--reason", "step_failed")
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    results = [(p.returncode, out, err) for p, (out, err) in zip((first, second), outputs, strict=True)]

    moved = 0
    outcomes = []
    for code, out, err in results:
        assert "Traceback" not in err, err
        if code == 0:
            went, done, selected = map(int, SUMMARY.search(out).groups())  # type: ignore[union-attr]
            assert selected == LETTERS and went + done == LETTERS, out
            moved += went
            outcomes.append("moved" if went else "nothing left")
        else:
            assert code == 1, (code, out, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and FENCED in lines[0], err
            outcomes.append("fenced")
    print("outcomes:", sorted(outcomes))  # which interleaving this run saw (pytest -s)
    assert moved == LETTERS, results
    assert sorted(outcomes) in (["fenced", "moved"], ["moved", "nothing left"]), results

    _each_once(tools, LETTERS)

    again = tools.run("deadletters", "redrive", "--reason", "step_failed")
    assert again.returncode == 0, again.stderr
    assert SUMMARY.search(again.stdout).groups() == ("0", str(LETTERS), str(LETTERS))  # type: ignore[union-attr]


def test_a_redrive_fenced_midway_by_another_writes_nothing_and_says_so(tools: Tools) -> None:
    """The interleaving the race above meets only sometimes, made certain: while one redrive reads the
    dead letters (its producer initialised, its transaction not begun), another redrive process runs to
    its end. The first is fenced: it raises RedriveFenced (what the CLI prints as its one line) and
    writes nothing; the other moved each dead letter once."""
    from edgebridge.config import load_config
    from edgebridge.ops.config import SECTIONS, OpsConfig
    from edgebridge.ops.redrive import RedriveFenced, redrive

    count = 50
    _dead_letters(tools, count)
    config = load_config(OpsConfig, tools.config, env={}, sections=SECTIONS)
    other: list[subprocess.CompletedProcess[str]] = []

    def select(record: object) -> bool:
        if not other:  # the first dead letter read: the other redrive starts, and ends, now
            other.append(tools.run("deadletters", "redrive", "--reason", "step_failed"))
        return True

    with pytest.raises(RedriveFenced, match=r"^fenced by another redrive .* nothing of this run was written"):
        redrive(config, select, dry_run=False, check_registry=False)
    assert other[0].returncode == 0, other[0].stderr
    assert SUMMARY.search(other[0].stdout).groups() == (str(count), "0", str(count))  # type: ignore[union-attr]
    _each_once(tools, count)
