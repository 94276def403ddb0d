"""Apache Kafka plumbing: the local KRaft launcher, the project's topics, client configuration.

- ``streamproc.kafka.launcher``: resolve Kafka's jars (Maven or ``KAFKA_HOME``), start, stop and
  inspect a local 1- or 3-broker cluster, run Kafka's Java tools. Its parts: ``runtime`` (Kafka
  version, Java, jars, tools), ``brokerconfig`` (node layout, ports, broker config files),
  ``clusterstate`` (``cluster.json``, ``state.json``) and ``processes`` (the broker processes).
- ``streamproc.kafka.topics``: the six topics declared once from the settings; ``ensure_topics``.
- ``streamproc.kafka.clients``: ``client_config``, the one source of client configuration.

The submodules are imported on demand, so importing this package loads no Kafka client.
"""

from __future__ import annotations

__all__: list[str] = []
