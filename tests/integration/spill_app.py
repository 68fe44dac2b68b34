"""A small application for the spill tests, run as its own process.

    python spill_app.py BOOTSTRAP TOPIC SPILL_DIR COUNT PREFIX MODE [TRANSPORT]

Logs COUNT keyed records ``PREFIX-i`` (key ``PREFIX-k<i%5>``), then by MODE:
``kill`` waits until they are all spilled and SIGKILLs itself; ``wait`` prints "ready" and waits
for a line on stdin, then closes the handler; ``close`` closes the handler at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from kafkalog import KafkaHandler


def main() -> int:
    bootstrap, topic, spill_dir, count_s, prefix, mode = sys.argv[1:7]
    transport = sys.argv[7] if len(sys.argv) > 7 else "kafka-python"
    count = int(count_s)
    handler = KafkaHandler(
        topic=topic,
        bootstrap_servers=bootstrap,
        spill_dir=spill_dir,
        key="k",
        spill_fsync="never",  # what SIGKILL must not lose is what reached the OS
        close_timeout_ms=30000,
        request_timeout_ms=2000,
        transport=transport,
    )
    log = logging.getLogger("spill_app")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    for i in range(count):
        log.info("%s-%d", prefix, i, extra={"k": f"{prefix}-k{i % 5}", "seq": i, "app": prefix})
    if mode == "kill":
        deadline = time.monotonic() + 60
        while handler.stats()["spilled"] < count and time.monotonic() < deadline:
            time.sleep(0.05)  # polling another thread's progress; bounded
        print(f"spilled {handler.stats()['spilled']}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "wait":
        deadline = time.monotonic() + 60
        while handler.stats()["spilled"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
        print("ready", flush=True)
        sys.stdin.readline()
    handler.close()
    stats = handler.stats()
    print(f"last_error {stats['last_error']} retries {stats['retries']}", file=sys.stderr)
    print(f"stats {stats['delivered']} {stats['replayed']} {stats['spill_pending_records']}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
