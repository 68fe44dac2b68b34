"""A Flask app whose records go to Kafka with kafkalog, each carrying its request's fields.

    .venv/bin/python tests/broker/kraft.py exec -- .venv/bin/python examples/flask_app.py  # a demo
    KAFKALOG_BOOTSTRAP_SERVERS=host:port python examples/flask_app.py --serve   # a server

The demo sends a few requests through Flask's test client, waits until their records are
delivered and prints each request's id. ``--serve`` runs the development server on
127.0.0.1:5000 instead. Records go to ``$KAFKALOG_TOPIC`` (default ``flask-logs``).
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys

from flask import Flask, abort, jsonify, session
from flask.typing import ResponseReturnValue

from kafkalog import KafkaHandler
from kafkalog.contrib.flask import RequestContextExtension

log = logging.getLogger("flask_app")


def configure_logging(topic: str) -> None:
    """Send the ``flask_app`` logger's records to Kafka (bootstrap: $KAFKALOG_BOOTSTRAP_SERVERS)."""
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "kafka": {
                "class": "kafkalog.KafkaHandler",
                "topic": topic,
                "key": "request_id",  # one request's records stay in order on one partition
                "linger_ms": "20",
                "static_fields": {"service": "flask-example"},
            },
        },
        "loggers": {"flask_app": {"handlers": ["kafka"], "level": "INFO", "propagate": False}},
    })


def create_app() -> Flask:
    """The application: its routes log, and the extension binds each request's fields."""
    app = Flask(__name__)
    app.secret_key = os.environ.get("FLASK_SECRET_KEY", "example-only-not-a-secret")
    RequestContextExtension(app, user_id=lambda: session.get("user_id"))

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> ResponseReturnValue:
        session["user_id"] = user_id
        log.info("logged in")
        return jsonify(ok=True)

    @app.get("/orders")
    def orders() -> ResponseReturnValue:
        log.info("listing orders")
        log.info("found %d orders", 2, extra={"count": 2})
        return jsonify(orders=[1, 2])

    @app.get("/missing")
    def missing() -> ResponseReturnValue:
        log.warning("nothing here")
        abort(404)

    return app


def kafka_handler() -> KafkaHandler:
    """The handler dictConfig attached to the ``flask_app`` logger."""
    return next(h for h in log.handlers if isinstance(h, KafkaHandler))


def demo() -> int:
    """Send a few requests through the test client; 0 if all their records were delivered."""
    configure_logging(os.environ.get("KAFKALOG_TOPIC", "flask-logs"))
    client = create_app().test_client()
    ids = [
        client.get("/orders").headers["X-Request-ID"],
        client.get("/orders", headers={"X-Request-ID": "demo-given-id"}).headers["X-Request-ID"],
        client.post("/login/7").headers["X-Request-ID"],
        client.get("/orders").headers["X-Request-ID"],  # as user 7 now
        client.get("/missing").headers["X-Request-ID"],
    ]
    delivered = kafka_handler().flush(30)
    print("request ids:", " ".join(ids))
    print("delivered" if delivered else "NOT delivered:", kafka_handler().stats())
    logging.shutdown()
    return 0 if delivered else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="run the development server")
    if not parser.parse_args().serve:
        return demo()
    configure_logging(os.environ.get("KAFKALOG_TOPIC", "flask-logs"))
    create_app().run(host="127.0.0.1", port=5000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
