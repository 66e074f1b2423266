"""Sinks: ``iot.events.processed`` (read_committed) into a database, exactly once.

Delivery guarantee: each processed event becomes exactly one row. The consumed offsets are stored in the
database, in the same database transaction as the rows of the batch, and on assignment the sink starts
from the offsets it stored (not from Kafka's committed offsets), so a crash between the two cannot
happen: a batch's rows and its offsets are both there or both absent. Rows are keyed by event id and
inserted with "ignore on conflict" as a second line of defence.

With ``aggregates = true`` a sink also reads ``iot.aggregates`` (the aggregator's windows) into the
table ``aggregates``, upserted by the record's key, the offsets of that topic stored with them in the
same way: the table holds each window's latest figures, once (re-reading a record after a crash
upserts the same figures again).

A record that cannot become a row (undecodable, a data the columns cannot hold, a row the database
refuses) is quarantined in the same database and transaction (:mod:`enricher.sinks.quarantine`): the
stream goes on, and nothing is lost silently.

A store is a 3-method protocol (:class:`Store`); :class:`SinkRunner` owns the consumer and the loop;
:mod:`enricher.sinks.rows` says what a row is.
"""

from __future__ import annotations

from enricher.sinks.base import SinkConfig, SinkRunner, Store
from enricher.sinks.quarantine import Batch, Origin
from enricher.sinks.rows import Row, row_of

__all__ = ["Batch", "Origin", "Row", "SinkConfig", "SinkRunner", "Store", "row_of"]
