"""A small application for the security tests, run as its own process.

    python security_app.py BOOTSTRAP TOPIC SPILL_DIR CAFILE COUNT PREFIX MODE [CAUSE]

Logs COUNT records ``PREFIX i`` through a SASL_SSL (SCRAM-SHA-512) handler for user ``writer``,
whose password it takes from ``$KAFKALOG_SASL_PASSWORD`` as a deployed application would.
MODE ``refused``: waits (bounded) until all are spilled and kafkalog has warned about CAUSE,
prints ``repr`` and ``stats()`` as JSON, then closes quickly. MODE ``fixed``: closes with time
to replay the spill it adopted, then prints ``pending N``. kafkalog's own warnings go to this
process's stderr as usual.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from kafkalog import KafkaHandler
from kafkalog.diagnostics import log as kafkalog_log


def main() -> int:
    bootstrap, topic, spill_dir, cafile, count_s, prefix, mode = sys.argv[1:8]
    cause = sys.argv[8] if len(sys.argv) > 8 else ""
    count = int(count_s)
    handler = KafkaHandler(
        topic=topic,
        bootstrap_servers=bootstrap,
        spill_dir=spill_dir,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="writer",
        ssl_cafile=cafile,
        request_timeout_ms=3000,
        retry_backoff_max_ms=300,
        spill_after_ms=200,
        close_timeout_ms=1000 if mode == "refused" else 60000,
    )
    warned: list[str] = []
    watcher = logging.Handler()
    watcher.emit = lambda record: warned.append(record.getMessage())  # type: ignore[method-assign]
    kafkalog_log.addHandler(watcher)
    log = logging.getLogger("security_app")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    for i in range(count):
        log.info("%s %d", prefix, i)
    if mode == "refused":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if handler.stats()["spilled"] >= count and any(cause in m for m in warned):
                break
            time.sleep(0.05)  # polling the worker thread's progress; bounded
        print(repr(handler))
        print(json.dumps(handler.stats()))
    handler.close()
    print("pending", handler.stats()["spill_pending_records"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
