"""A cluster of several KRaft nodes sharing a static controller quorum, started and stopped
together, with the leader of a partition looked up for failover tests."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType

from broker.admin import partition_leader
from broker.errors import BrokerError
from broker.jars import ensure_jars
from broker.node import KafkaBroker, new_cluster_id
from broker.polling import wait_for
from broker.processes import HOST, free_port

__all__ = ["KafkaCluster"]


class KafkaCluster:
    """``size`` combined KRaft nodes (ids 1..size) sharing a static controller quorum.

    Internal topics get replication factor ``min(size, 3)`` and ``min.insync.replicas``
    defaults to ``min(2, size)``, like a small production cluster.
    """

    managed = True

    def __init__(
        self,
        size: int = 3,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        replication_factor: int | None = None,
        min_insync_replicas: int | None = None,
        config: Mapping[str, object] | None = None,
    ) -> None:
        """Describe the cluster (ports and cluster id are chosen now); see :meth:`start`."""
        if size < 1:
            raise ValueError("size must be >= 1")
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(
            work_dir if work_dir is not None else tempfile.mkdtemp(prefix="kafkalog-cluster-")
        ).resolve()
        self.cluster_id = new_cluster_id()
        rf = replication_factor if replication_factor is not None else min(size, 3)
        min_isr = min_insync_replicas if min_insync_replicas is not None else min(2, size)
        ids = range(1, size + 1)
        controller_ports = {node_id: free_port() for node_id in ids}
        voters = ",".join(f"{i}@{HOST}:{p}" for i, p in controller_ports.items())
        self.brokers: dict[int, KafkaBroker] = {
            node_id: KafkaBroker(
                self.work_dir / f"node-{node_id}",
                node_id=node_id,
                controller_port=controller_ports[node_id],
                cluster_id=self.cluster_id,
                quorum_voters=voters,
                replication_factor=rf,
                min_insync_replicas=min_isr,
                config=config,
            )
            for node_id in ids
        }

    @property
    def bootstrap(self) -> str:
        """Comma-joined bootstrap of all nodes (running or not)."""
        return ",".join(b.bootstrap for b in self.brokers.values())

    @property
    def running_bootstrap(self) -> str:
        """Comma-joined bootstrap of the nodes whose JVM is alive."""
        return ",".join(b.bootstrap for b in self.brokers.values() if b.is_running)

    def broker(self, node_id: int) -> KafkaBroker:
        """The node with ``node_id`` (1-based), e.g. to kill or restart it."""
        return self.brokers[node_id]

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        """Launch all nodes together (a static quorum needs a majority to elect a
        controller) and wait until every node sees every broker unfenced."""
        jars = ensure_jars()
        try:
            for b in self.brokers.values():
                b._jars = jars
                b.launch()
            deadline = time.monotonic() + timeout
            for b in self.brokers.values():
                b.wait_ready(
                    timeout=max(1.0, deadline - time.monotonic()),
                    expected_brokers=self.brokers.keys(),
                )
        except BaseException:
            self.stop(kill=True)
            raise
        return self

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop all nodes at once (bounded by ``timeout`` overall, then SIGKILL)."""
        # Signal everybody first: stopping nodes one at a time makes the last ones lose
        # the controller quorum and stall in controlled shutdown.
        for b in self.brokers.values():
            b.send_stop(kill=kill)
        deadline = time.monotonic() + timeout
        for b in self.brokers.values():
            b.wait_stopped(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        """Kill all nodes and delete the work directory if this object created it."""
        # SIGKILL, not SIGTERM: when the whole quorum goes down at once, the last Raft
        # leader waits 5 s for followers to acknowledge its resignation, and there is
        # nothing worth a graceful shutdown in a throwaway test cluster.
        self.stop(kill=True)
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def leader_of(
        self,
        topic: str,
        partition: int = 0,
        *,
        exclude: Collection[int] = (),
        timeout: float = 30.0,
    ) -> int:
        """Node id leading ``topic``/``partition`` per the live nodes' metadata.

        ``exclude`` lists node ids that must not be reported (e.g. a just-killed leader
        whose death the controller has not noticed yet); polls until that holds.
        """
        banned = set(exclude)

        def probe() -> int | None:
            bootstrap = self.running_bootstrap
            if not bootstrap:
                raise BrokerError("no node of the cluster is running")
            leader = partition_leader(bootstrap, topic, partition, timeout=5.0)
            return leader if leader is not None and leader not in banned else None

        return wait_for(
            probe,
            timeout=timeout,
            interval=0.25,
            description=f"a leader for {topic}-{partition} not in {sorted(banned)}",
        )

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KafkaCluster(size={len(self.brokers)}, bootstrap={self.bootstrap!r})"
