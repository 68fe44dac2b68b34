"""``kafkalog sink``: a consumer group that writes kafkalog's topics to a store.

At least once into the store, exactly once in the index: each document's ``_id`` is the
record's ``id`` (else ``topic-partition-offset``), and a partition's offset is committed only
after the store acknowledged every record before it. The parts: :mod:`.config` (options),
:mod:`.loop` (the consumer loop), :mod:`.offsets` (what may be committed), :mod:`.bulks` (the
bulk workers), :mod:`.documents` and :mod:`.routing` (records as documents, index names),
:mod:`.outputs` (OpenSearch, files), :mod:`.deadletters`, :mod:`.stats`. The Kafka consumer
lives in :mod:`kafkalog.client.group`.
"""

from kafkalog.sink.config import SinkConfig, load_toml, sink_config
from kafkalog.sink.loop import Sink

__all__ = ["Sink", "SinkConfig", "load_toml", "sink_config"]
