"""The operator's tools: ``edgebridge audit``, ``tail``, ``deadletters``, ``command``.

Each takes ``--config`` and the ``EDGEBRIDGE_KAFKA_*`` environment like the components (the ``[kafka]``
section with its librdkafka passthrough, so SASL and TLS work, and the ``[topics]`` names). They run on
the cloud side: confluent-kafka is imported inside the functions that talk to Kafka, so that every
module of ``edgebridge`` still imports on a device, which has none.
"""
