"""What one KRaft node is configured with: its listener addresses, its ``server.properties``
and its ``log4j2.properties``, written into its work directory before it starts.

:class:`NodeConfig` is a mixin of :class:`broker.node.KafkaBroker`, which sets the attributes
it reads; :class:`broker.secured.SecuredKafkaBroker` extends :meth:`broker_properties`.
"""

from __future__ import annotations

from pathlib import Path

from broker.logs import LOG4J2
from broker.processes import HOST

__all__ = ["NodeConfig", "prop_value"]


class NodeConfig:
    """The configuration files of one node (``process.roles=broker,controller``)."""

    # Set by KafkaBroker.__init__.
    node_id: int
    port: int
    controller_port: int
    quorum_voters: str | None
    replication_factor: int
    min_insync_replicas: int
    extra_config: dict[str, object]
    proxy_port: int | None
    external_port: int | None
    work_dir: Path
    data_dir: Path
    properties_file: Path
    log4j_file: Path
    log_file: Path

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the PLAINTEXT client listener."""
        return f"{HOST}:{self.port}"

    @property
    def controller_endpoint(self) -> str:
        """``"127.0.0.1:PORT"`` of the CONTROLLER listener."""
        return f"{HOST}:{self.controller_port}"

    def broker_properties(self) -> dict[str, str]:
        """The ``server.properties`` content this node runs with."""
        rf = self.replication_factor
        min_isr = min(self.min_insync_replicas, rf)
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{self.controller_endpoint}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap},"
            f"CONTROLLER://{self.controller_endpoint}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": True,
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            # 50 partitions (the default) makes the first consumer group join slow.
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": 5,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            # Notice a dead node within ~3 s instead of 9 s so leader failover is quick.
            "broker.session.timeout.ms": 3000,
            "broker.heartbeat.interval.ms": 500,
            # Small thread pools: tests run several JVMs on small CI machines.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "num.replica.fetchers": 1,
            # Keep disk use tiny and shutdown/recovery cheap.
            "log.segment.bytes": 16 * 1024 * 1024,
            "log.cleaner.dedupe.buffer.size": 2 * 1024 * 1024,
        }
        if self.quorum_voters:
            props["controller.quorum.voters"] = self.quorum_voters
        else:
            props["controller.quorum.bootstrap.servers"] = self.controller_endpoint
        if self.proxy_port is not None:
            props["listeners"] = f"{props['listeners']},EXTERNAL://{HOST}:{self.external_port}"
            props["advertised.listeners"] = (
                f"{props['advertised.listeners']},EXTERNAL://{HOST}:{self.proxy_port}"
            )
            props["listener.security.protocol.map"] = (
                f"{props['listener.security.protocol.map']},EXTERNAL:PLAINTEXT"
            )
        props.update(self.extra_config)
        return {k: prop_value(v) for k, v in props.items()}

    def _write_configs(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}={v}\n" for k, v in self.broker_properties().items())
        self.properties_file.write_text(body)
        self.log4j_file.write_text(LOG4J2.format(log_file=self.log_file))


def prop_value(value: object) -> str:
    """A Kafka config value as text: booleans as ``true``/``false``, the rest with ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
