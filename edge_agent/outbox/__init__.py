"""The outbox: a bounded, durable SQLite queue of encoded events, one writer connection.

Delivery guarantee. An event is *committed* when the transaction that inserted it has committed with
``synchronous=FULL`` (the default): from then on it survives kill -9 and power loss, and it stays in the
outbox until :meth:`Outbox.commit` is handed its PUBACK (``acked``), or until the bound evicts it, which
is counted and announced as an ``edgebridge.gap.v1`` event carrying the exact evicted ``seq`` range.

Commit order, inside one transaction per group commit (every N events or T ms, see the agent loop):

1. delete the rows whose PUBACK arrived since the last commit;
2. announce seqs burnt by ``reject_new`` earlier, once there is room for the gap event;
3. assign the next seqs (from the ``seqs`` counter table, never from rowids: a counter survives the
   outbox draining empty and restarts) and insert the new events, or refuse them under ``reject_new``;
4. under ``drop_oldest``, evict the oldest rows until the bound holds, then insert one gap per
   contiguous evicted run;
5. update the counters (evictions, last ack) that ``edgebridge agent status`` reads; COMMIT.

Modules: :mod:`~edge_agent.outbox.store` (:class:`Outbox`: open, read, the group commit above),
:mod:`~edge_agent.outbox.bound` (the bound and its two overflow policies),
:mod:`~edge_agent.outbox.recent` (the latest rows kept in memory for the forwarder),
:mod:`~edge_agent.outbox.rows` (:class:`Row`, what the forwarder is handed),
:mod:`~edge_agent.outbox.seqfile` (the seq sidecar: the seqs reserved and acked, surviving the file),
:mod:`~edge_agent.outbox.integrity` (the check at open and the quarantine of a corrupt file),
:mod:`~edge_agent.outbox.migrations` (the tables) and :mod:`~edge_agent.outbox.status` (what
``edgebridge agent status`` reads while the agent runs).
"""

from edge_agent.outbox.rows import Row
from edge_agent.outbox.status import read_status
from edge_agent.outbox.store import CommitResult, Outbox, OutboxError, OutboxStats

__all__ = ["CommitResult", "Outbox", "OutboxError", "OutboxStats", "Row", "read_status"]
