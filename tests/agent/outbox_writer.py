"""A child process that commits events to a real outbox until it is killed, and says what it saw.

``python -m tests.agent.outbox_writer OUTBOX REPORT RUN SEED CONFIG_JSON``: opens the outbox (a
:class:`~edge_agent.outbox.Outbox` with ``OutboxConfig(**CONFIG_JSON)``), then forever: acks a range
of what it holds (sometimes), commits a batch of readings, and now and then closes and reopens.

It appends one JSON line per fact to REPORT, a file outside the file system under test, with one
``write(2)`` each (a kill leaves whole lines):

- ``{"open": epoch}`` after the outbox opened;
- ``{"ack": [first, last]}`` *before* the commit that deletes the range (so: possibly deleted);
- ``{"c": [first, last], "i0": i, "gaps": [[seq, first, last], ...], "rej": n, "hi": last_seq}``
  after a commit returned: seqs ``first..last`` hold the readings ``RUN.i0``, ``RUN.i0+1``...; each
  gap event's seq and range; ``n`` refused events, whose burnt seqs end at ``hi``, the last seq assigned.

Each reading's ``data.n.v`` is ``"RUN.i"``: who reads the outbox later can tell which event a seq holds.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

from edge_agent.config import OutboxConfig
from edge_agent.outbox import Outbox, OutboxError
from edgebridge.envelope import new_reading

DEV = "dev-1"


def main(path: Path, report: Path, run: int, seed: int, config: OutboxConfig) -> None:
    rng = random.Random(seed)
    fd = os.open(report, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def say(**fact: object) -> None:
        os.write(fd, json.dumps(fact).encode() + b"\n")

    def opened() -> Outbox:
        box = Outbox(path, DEV, config).open()
        # Checkpoints are where the database file itself is written: make them frequent, so that
        # cuts land in them too (the default waits for a 4 MB WAL).
        box._conn.execute("PRAGMA wal_autocheckpoint=8")
        say(open=box.epoch)
        return box

    box = opened()
    i = 0
    while True:
        if rng.random() < 0.03:
            box.close()
            box = opened()
        acked: list[tuple[int, int]] = []
        head = box.head()
        if head is not None and rng.random() < 0.4:
            first = head if rng.random() < 0.8 else rng.randint(head, box.last_seq)
            acked.append((first, min(box.last_seq, first + rng.randint(0, 40))))
            say(ack=acked[0])
        n = rng.choice((0, 1, 5, 20, 60)) if acked else rng.choice((1, 5, 20, 60))
        events = [new_reading(DEV, 1, {"n": {"v": f"{run}.{i + k}"}, "pad": {"v": "x" * rng.randint(0, 700)}})
                  for k in range(n)]
        try:
            result = box.commit(events, acked)
        except OutboxError as exc:  # the power is gone: nothing more to say
            print(f"commit failed: {exc}", file=sys.stderr)
            raise
        gaps = [[g.seq, g.data["first"], g.data["last"]] for g in result.gaps]
        say(c=[result.first_seq, result.last_seq], i0=i, gaps=gaps, rej=result.rejected, hi=box.last_seq)
        i += n


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
         OutboxConfig(**json.loads(sys.argv[5])))
