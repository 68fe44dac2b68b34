"""Settings of the example shop: ``LOGGING`` sends the app's records to Kafka with kafkalog.

Everything kafkalog-specific is in ``MIDDLEWARE`` (the request context) and ``LOGGING``.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After AuthenticationMiddleware, so that user_id is known.
    "kafkalog.contrib.django.RequestContextMiddleware",
]

ROOT_URLCONF = "shop.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE", str(BASE_DIR / "db.sqlite3")),
    }
}

USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "console": {"class": "logging.StreamHandler", "level": "WARNING"},
        "kafka": {
            "class": "kafkalog.KafkaHandler",
            "topic": os.environ.get("KAFKALOG_TOPIC", "shop-logs"),
            # bootstrap_servers defaults to $KAFKALOG_BOOTSTRAP_SERVERS, else localhost:9092.
            "key": "request_id",  # one request's records stay in order on one partition
            "linger_ms": "20",
            "static_fields": {"service": "shop"},
        },
    },
    "loggers": {
        "shop": {"handlers": ["console", "kafka"], "level": "INFO", "propagate": False},
        # Django logs unhandled exceptions (500s) here.
        "django.request": {"handlers": ["console", "kafka"], "level": "WARNING",
                           "propagate": False},
    },
}
