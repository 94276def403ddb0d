"""Apache Kafka plumbing: the local KRaft launcher, the project's topics, client configuration.

- ``streamproc.kafka.launcher``: resolve Kafka's jars (Maven or ``KAFKA_HOME``), start, stop and
  inspect a local 1- or 3-broker cluster, run Kafka's Java tools. Its parts: ``runtime`` (Kafka
  version, Java, jars, tools), ``brokerconfig`` (node layout, ports, broker config files),
  ``clusterstate`` (``cluster.json``, ``state.json``) and ``processes`` (the broker processes);
  the secured mode (``--security sasl_ssl``): ``localsecurity`` (listeners, passwords, client
  files), ``certs`` (the local CA) and ``secretfiles`` (0600 files, env files).
- ``streamproc.kafka.topics``: the six topics declared once from the settings; ``ensure_topics``.
- ``streamproc.kafka.clients``: ``client_config``, the one source of client configuration, with
  TLS/SASL from ``streamproc.kafka.security``.
- ``streamproc.kafka.acls``: SCRAM users and the ACLs the pipeline needs.

The submodules are imported on demand, so importing this package loads no Kafka client.
"""

from __future__ import annotations

__all__: list[str] = []
