"""A consumer fenced through its static membership ends the enricher's run, which the supervisor then
restarts; it never stays up as a member of no group.

Seen on the three-node cluster (tests/e2e/test_scaleout.py): the group coordinator's node killed, the
consumer's session timed out, librdkafka rejoined with the same ``group.instance.id`` and its own old
member was fenced: a *fatal* consumer error ("Static consumer fenced by other consumer with same
group.instance.id"). librdkafka reports it only to ``error_cb``; the enricher had none, so it went on
turning its loop without partitions: healthy, idle, and the stream stalled until another replica (or
nobody) took them. Here the fence is made directly: a second consumer joins with the same instance id.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Consumer

from edgebridge.topics import KafkaTopics
from enricher.checkpoint import FatalKafkaError
from enricher.config import EXACTLY_ONCE_CONSUMER
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import InProcess, enricher_config
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def test_a_consumer_fenced_by_its_static_instance_id_ends_the_run(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str]
) -> None:
    topics = make_topics(1)
    group = consumer_group()
    config = enricher_config(brokers, topics, group, "static-1")
    assert config.static_membership
    run = InProcess(config)
    intruder = Consumer({"bootstrap.servers": brokers.kafka_bootstrap, "group.id": group,
                         "group.instance.id": "static-1", "session.timeout.ms": 6000,
                         **EXACTLY_ONCE_CONSUMER})  # the group's protocol, or the join is refused
    try:
        with run:
            wait_for(lambda: run.processor.assignment.assigned == {0}, 60, "the enricher owning partition 0")
            intruder.subscribe([topics.raw])
            # the fault: the coordinator gave the instance id, and the partition, to the intruder
            wait_for(lambda: (intruder.poll(0.2), intruder.assignment())[1], 60, "the intruder's join")
            wait_for(lambda: not run.thread.is_alive(), 60, "the enricher's run ending")
            error, run.error = run.error, None  # judged here, not re-raised by the exit
        assert isinstance(error, FatalKafkaError), error
        assert "fenced" in str(error).lower(), error
    finally:
        intruder.close()
