#!/usr/bin/env python
"""Django's command-line utility for the example shop: ``python manage.py runserver``.

Needs a broker: ``KAFKALOG_BOOTSTRAP_SERVERS=host:port`` (default ``localhost:9092``); records
go to ``$KAFKALOG_TOPIC`` (default ``shop-logs``). First run ``python manage.py migrate``.
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
