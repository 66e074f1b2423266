"""The forwarder's two-stage acknowledgment, as pure logic: a real outbox, a scripted link, a fake clock.

No broker and no sleep: the link records what was published and the test decides which PUBACKs and
receipts arrive, and when; ``clock`` replaces ``time.monotonic`` in the forwarder.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import forwarder as forwarder_module
from edge_agent.config import ForwarderConfig
from edge_agent.forwarder import Forwarder
from edge_agent.outbox import Outbox
from edgebridge.envelope import decode, decode_batch, new_reading
from edgebridge.receipts import encode_receipt

DEV = "dev-f"


class ScriptedLink:
    """What the forwarder uses of :class:`~edge_agent.mqtt_link.MqttLink`, with every publish recorded."""

    def __init__(self) -> None:
        self.generation = 1
        self.current: object | None = object()
        self.acks: collections.deque[tuple[int, int, bool]] = collections.deque()
        self.receipts: collections.deque[bytes] = collections.deque()
        self.published: dict[int, list[int]] = {}  # mid -> seqs in the message
        self.order: list[int] = []  # mids in publish order, since the last take()
        self.unacked: list[int] = []  # mids published and not yet PUBACKed by the script
        self.reconnects = 0
        self._mid = 0

    def publish(self, topic: str, payload: bytes, **_kw: Any) -> tuple[int, int] | None:
        if self.current is None:
            return None
        self._mid += 1
        events = decode_batch(payload) if payload[:1] == b"[" else [decode(payload)]
        self.published[self._mid] = [e.seq for e in events]
        self.order.append(self._mid)
        self.unacked.append(self._mid)
        return self.generation, self._mid

    def puback(self, mid: int, ok: bool = True) -> None:
        self.acks.append((self.generation, mid, ok))
        self.unacked.remove(mid)

    def puback_all(self) -> None:
        for mid in list(self.unacked):
            self.puback(mid)

    def receipt(self, ranges: list[tuple[int, int]], epoch: str, device: str = DEV) -> None:
        self.receipts.append(encode_receipt(device, epoch, ranges))

    def reconnect(self) -> None:
        self.reconnects += 1

    def take(self) -> list[list[int]]:
        """The seqs of each message published since the last take, in order."""
        out = [self.published[m] for m in self.order]
        self.order = []
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(forwarder_module.time, "monotonic", c)
    monkeypatch.setattr(forwarder_module.random, "random", lambda: 0.0)  # no jitter: exact deadlines
    return c


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db", DEV) as box:
        yield box


def make(outbox: Outbox, **config: Any) -> tuple[Forwarder, ScriptedLink]:
    link = ScriptedLink()
    fwd = Forwarder(link, ForwarderConfig(**config), "d/dev-f/events", DEV)  # type: ignore[arg-type]
    fwd.start_from(outbox)
    return fwd, link


def commit(outbox: Outbox, n: int, fwd: Forwarder | None = None) -> None:
    done = fwd.take_done() if fwd is not None else []
    outbox.commit([new_reading(DEV, 1, {"n": {"v": i}}) for i in range(n)], done)


def step(fwd: Forwarder, outbox: Outbox) -> None:
    """One turn of the agent loop's forwarding part: PUBACKs and receipts, a commit, a pump."""
    fwd.collect(outbox)
    outbox.commit([], fwd.take_done())
    fwd.pump(outbox)


def seqs(messages: list[list[int]]) -> list[int]:
    return [s for m in messages for s in m]


def test_puback_keeps_the_row_the_receipt_deletes_it(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox)
    commit(outbox, 5)
    fwd.pump(outbox)
    assert seqs(link.take()) == [1, 2, 3, 4, 5] and fwd.unreceipted == 5
    link.puback_all()
    step(fwd, outbox)
    assert outbox.stats.rows == 5 and fwd.inflight == 0 and fwd.unreceipted == 5  # the broker's word only
    link.receipt([(1, 3)], outbox.epoch)
    step(fwd, outbox)
    assert outbox.stats.rows == 2 and fwd.unreceipted == 2 and fwd.stats.receipted_events == 3
    link.receipt([(4, 5)], outbox.epoch)
    step(fwd, outbox)
    assert outbox.stats.rows == 0 and fwd.unreceipted == 0
    assert link.take() == []  # nothing was sent twice


def test_no_receipt_in_time_resends_oldest_first_with_doubling_timeout(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox, receipt_timeout=10.0, receipt_timeout_max=25.0)
    commit(outbox, 3)
    fwd.pump(outbox)
    link.take()
    link.puback_all()
    step(fwd, outbox)
    clock.now += 9.9
    step(fwd, outbox)
    assert link.take() == []
    clock.now += 0.2  # 10 s after the PUBACK: lost by the broker, as far as the agent can tell
    step(fwd, outbox)
    assert link.take() == [[1], [2], [3]] and fwd.stats.resent_events == 3
    link.puback_all()
    step(fwd, outbox)
    clock.now += 19.9  # the second wait doubles: 20 s
    step(fwd, outbox)
    assert link.take() == []
    clock.now += 0.2
    step(fwd, outbox)
    assert seqs(link.take()) == [1, 2, 3]
    link.puback_all()
    step(fwd, outbox)
    clock.now += 25.1  # capped at receipt_timeout_max (40 s otherwise)
    step(fwd, outbox)
    assert seqs(link.take()) == [1, 2, 3]
    assert outbox.stats.rows == 3  # never deleted without a receipt


def test_a_receipt_resets_grown_timeouts(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox, receipt_timeout=10.0, receipt_timeout_max=600.0)
    commit(outbox, 2)
    fwd.pump(outbox)
    link.puback_all()
    step(fwd, outbox)
    for wait in (10.1, 20.1, 40.1):  # an outage: three resends, the next one 80 s away
        clock.now += wait
        step(fwd, outbox)
        link.puback_all()
        step(fwd, outbox)
    link.take()
    commit(outbox, 1, fwd)
    fwd.pump(outbox)
    link.receipt([(3, 3)], outbox.epoch)  # the path works again
    step(fwd, outbox)
    clock.now += 10.1
    step(fwd, outbox)
    assert seqs(link.take()) == [3, 1, 2]  # 1 and 2 went again after 10 s, not 80


def test_bound_of_unreceipted_stops_new_rows_not_resends(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox, max_unreceipted=4, receipt_timeout=5.0, window=100)
    commit(outbox, 10)
    fwd.pump(outbox)
    assert seqs(link.take()) == [1, 2, 3, 4] and fwd.blocked
    link.puback_all()
    step(fwd, outbox)
    assert link.take() == []  # PUBACKs free the window, not the bound
    clock.now += 5.1
    step(fwd, outbox)
    assert seqs(link.take()) == [1, 2, 3, 4]  # resends still go
    link.receipt([(1, 2)], outbox.epoch)
    step(fwd, outbox)
    assert seqs(link.take()) == [5, 6] and fwd.unreceipted == 4


def test_reconnect_sends_again_what_was_not_pubacked(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox, batch=True, batch_max_events=2)
    commit(outbox, 6)
    fwd.pump(outbox)
    assert link.take() == [[1, 2], [3, 4], [5, 6]]
    link.puback(1)
    step(fwd, outbox)
    link.generation += 1  # a new connection: the PUBACKs of 3..6 will never come
    step(fwd, outbox)
    assert link.take() == [[3, 4], [5, 6]] and fwd.stats.resends == 1
    assert fwd.unreceipted == 6


def test_receipts_not_ours_are_counted_and_ignored(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox)
    commit(outbox, 3)
    fwd.pump(outbox)
    link.puback_all()
    link.receipt([(1, 3)], outbox.epoch, device="dev-other")
    link.receipt([(1, 3)], "0123456789abcdef")  # an earlier life of this device
    link.receipts.append(b"not a receipt")
    step(fwd, outbox)
    assert outbox.stats.rows == 3 and fwd.stats.receipts_ignored == 3 and fwd.unreceipted == 3
    link.receipt([(2, 10**12)], outbox.epoch)  # seqs never assigned: those ignored, 2..3 applied
    step(fwd, outbox)
    assert fwd.stats.receipts_ignored == 4 and outbox.stats.rows == 1 and fwd.unreceipted == 1
    commit(outbox, 1, fwd)
    assert outbox.last_seq == 4  # nothing above the real last seq was taken for receipted


def test_receipt_before_puback_and_rows_of_an_earlier_run(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox)
    commit(outbox, 4)
    fwd.pump(outbox)
    link.receipt([(1, 2)], outbox.epoch)  # the bridge's receipt overtook the broker's PUBACK
    fwd.collect(outbox)
    assert fwd.unreceipted == 2
    link.puback_all()
    step(fwd, outbox)
    assert fwd.unreceipted == 2 and outbox.stats.rows == 2
    # a restarted agent: everything in the outbox counts as unsent, and a receipt of the last run
    # deletes rows it has not sent yet
    fwd2, link2 = make(outbox)
    link2.receipt([(3, 4)], outbox.epoch)
    step(fwd2, outbox)
    assert outbox.stats.rows == 0 and fwd2.unreceipted <= 2


def test_receipts_off_deletes_on_puback(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox, receipts="off")
    commit(outbox, 3)
    fwd.pump(outbox)
    link.puback_all()
    step(fwd, outbox)
    assert outbox.stats.rows == 0 and fwd.unreceipted == 0


def test_refused_puback_resends_after_reconnect(outbox: Outbox, clock: Clock) -> None:
    fwd, link = make(outbox)
    commit(outbox, 2)
    fwd.pump(outbox)
    link.puback(1, ok=False)
    link.puback(2)
    step(fwd, outbox)
    assert link.reconnects == 1 and fwd.stats.refused == 1
    assert seqs(link.take()) == [1, 2, 1]  # refused 1 goes again; 2 waits for its receipt


# -- the invariants, under any interleaving ---------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(1, 30)),
        st.tuples(st.just("puback"), st.floats(0, 1)),
        st.tuples(st.just("refuse"), st.floats(0, 1)),
        st.tuples(st.just("receipt"), st.integers(0, 200), st.integers(0, 40)),
        st.tuples(st.just("time"), st.floats(0, 60)),
        st.tuples(st.just("reconnect"), st.just(0)),
        st.tuples(st.just("pump"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150)
@given(ops, st.booleans(), st.integers(1, 8), st.integers(1, 60))
def test_no_row_deleted_without_a_receipt_and_every_row_eventually_receipted(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[Any, ...]], batch: bool, window: int,
    bound: int,
) -> None:
    clock = Clock()
    mp = pytest.MonkeyPatch()
    mp.setattr(forwarder_module.time, "monotonic", clock)
    try:
        with Outbox(tmp_path_factory.mktemp("fwd") / "o.db", DEV) as box:
            fwd, link = make(box, batch=batch, batch_max_events=3, window=window, max_unreceipted=bound,
                             receipt_timeout=5.0, receipt_timeout_max=20.0)
            receipted: set[int] = set()
            for op in script:
                kind = op[0]
                if kind == "commit":
                    commit(box, op[1], fwd)
                elif kind in ("puback", "refuse"):
                    for mid in link.unacked[: max(1, int(len(link.unacked) * op[1]))]:
                        link.puback(mid, ok=kind == "puback")
                elif kind == "receipt":
                    first, last = op[1] + 1, op[1] + 1 + op[2]
                    link.receipt([(first, last)], box.epoch)
                    receipted.update(range(first, min(last, box.last_seq) + 1))
                elif kind == "time":
                    clock.now += op[1]
                elif kind == "reconnect":
                    link.generation += 1
                    link.unacked.clear()  # the old connection's PUBACKs never come
                step(fwd, box)
                left = {r.seq for r in box.read(1, 10**6)}
                assert left | receipted >= set(range(1, box.last_seq + 1))  # deleted => receipted
                assert 0 <= fwd.unreceipted <= bound + 3 * window  # bounded (one turn may overshoot)
            # Then the path heals: PUBACKs flow, the bridge receipts whatever it got, time passes.
            for _ in range(2 * box.last_seq + 10):  # at worst one event a turn (bound 1)
                for message in link.take():
                    link.receipt([(min(message), max(message))], box.epoch)
                link.puback_all()
                clock.now += 30
                step(fwd, box)
                if box.stats.rows == 0 and not link.unacked:
                    break
            step(fwd, box)
            assert box.stats.rows == 0, f"{box.stats.rows} rows never receipted"
            assert fwd.unreceipted == 0
    finally:
        mp.undo()
