"""structlog rendering through the standard library into kafkalog: bound fields at the top level.

    .venv/bin/python tests/broker/kraft.py exec -- .venv/bin/python examples/structlog_app.py

structlog builds the event; its last processor, ``render_to_log_kwargs``, hands the event
text to ``logging`` as the message and every other key as ``extra=``. kafkalog writes extras
as top-level JSON fields, so ``log.bind(order_id=42).info("paid", amount=9.5)`` arrives as
``{"message": "paid", "order_id": 42, "amount": 9.5, "level": "INFO", ...}``. Leave level,
timestamp and exception rendering to kafkalog: those are standard fields already.

Records go to ``$KAFKALOG_TOPIC`` (default ``structlog-logs``); the bootstrap servers are
``$KAFKALOG_BOOTSTRAP_SERVERS``. Exits 0 once every record is delivered.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

from kafkalog import KafkaHandler


def configure(topic: str) -> KafkaHandler:
    """Route structlog through stdlib logging into a KafkaHandler on the root logger."""
    handler = KafkaHandler(topic=topic, linger_ms=20, static_fields={"service": "structlog-demo"})
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,  # fields bound with bind_contextvars
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.render_to_log_kwargs,  # event -> msg, the rest -> extra=
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),  # also fixes function/line
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


def main() -> int:
    handler = configure(os.environ.get("KAFKALOG_TOPIC", "structlog-logs"))
    log = structlog.stdlib.get_logger("shop.checkout")
    structlog.contextvars.bind_contextvars(session_id="s-1")
    order = log.bind(order_id=42, customer="c-7")
    order.info("order placed", items=3, total=19.5)
    order.warning("payment slow", wait_ms=1200)
    try:
        raise TimeoutError("gateway")
    except TimeoutError:
        order.exception("payment failed", attempt=2)
    structlog.contextvars.clear_contextvars()
    delivered = handler.flush(30)
    print("delivered" if delivered else "NOT delivered:", handler.stats())
    logging.shutdown()
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
