"""A minimal Django project logging to Kafka with kafkalog (see ../manage.py)."""
