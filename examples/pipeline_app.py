"""The delivery pipeline on its own: send your own bytes to Kafka, and learn what became of each.

No logging involved: the program builds JSON events itself, submits them to a
:class:`kafkalog.pipeline.Pipeline`, and counts the outcomes its callback hears (delivered,
spilled, dead-lettered, dropped). It exits 0 only if every event was delivered.

From a fresh clone, with a throwaway broker::

    python3 -m venv .venv && .venv/bin/pip install -e . && \\
        .venv/bin/python tests/broker/kraft.py exec -- .venv/bin/python examples/pipeline_app.py

Against a broker of your own: ``KAFKALOG_BOOTSTRAP_SERVERS=host:9092 python pipeline_app.py``.
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile

import orjson

from kafkalog.pipeline import Outcome, Pipeline

BOOTSTRAP = os.environ.get("KAFKALOG_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
TOPIC = os.environ.get("KAFKALOG_TOPIC") or "pipeline-events"
EVENTS = 1000


def main() -> int:
    outcomes: collections.Counter[Outcome] = collections.Counter()

    def on_outcome(outcome: Outcome, numbers: range) -> None:
        # On the pipeline's worker thread, once per run of records: keep it quick.
        outcomes[outcome] += len(numbers)

    with tempfile.TemporaryDirectory(prefix="kafkalog-pipeline-") as spill_dir:
        pipeline = Pipeline(TOPIC, bootstrap_servers=BOOTSTRAP,
                            spill_dir=spill_dir, on_outcome=on_outcome)
        last = 0
        for i in range(EVENTS):
            event = {"event": "page_view", "user": f"u-{i % 10}", "n": i}
            # The key keeps one user's events in order on one partition.
            last = pipeline.submit(orjson.dumps(event), f"u-{i % 10}".encode())
        delivered = pipeline.flush(15.0)  # every record up to `last` has an outcome
        pipeline.close()
    print(f"submitted {last} events, resolved up to {pipeline.resolved()}")
    print({outcome.value: count for outcome, count in outcomes.items()})
    stats = pipeline.stats()
    print({key: stats[key] for key in ("enqueued", "delivered", "spilled", "dropped")})
    return 0 if delivered and outcomes[Outcome.DELIVERED] == EVENTS else 1


if __name__ == "__main__":
    sys.exit(main())
