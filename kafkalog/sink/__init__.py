"""``kafkalog sink``: a consumer group that writes kafkalog's topics to a store.

At least once into the store, exactly once in the index: each document's ``_id`` is the
record's ``id`` (else ``topic-partition-offset``), and a partition's offset is committed only
after the store acknowledged every record before it. The parts: :mod:`.config` (options),
:mod:`.loop` (the consumer loop), :mod:`.offsets` (what may be committed), :mod:`.bulks` (the
bulk workers), :mod:`.documents` and :mod:`.routing` (records as documents, index names),
:mod:`.outputs` (OpenSearch, files), :mod:`.deadletters`, :mod:`.stats`. The Kafka consumer
lives in :mod:`kafkalog.client.group`, imported with :class:`Sink` when it is first used (the
options can be read, as the ``kafkalog`` command's parser does, without a Kafka client).
"""

from typing import TYPE_CHECKING, Any

from kafkalog.sink.config import SinkConfig, load_toml, sink_config

if TYPE_CHECKING:
    from kafkalog.sink.loop import Sink

__all__ = ["Sink", "SinkConfig", "load_toml", "sink_config"]


def __getattr__(name: str) -> Any:
    if name == "Sink":
        from kafkalog.sink.loop import Sink  # noqa: PLC0415

        return Sink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
