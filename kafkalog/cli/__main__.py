"""``python -m kafkalog.cli``: the ``kafkalog`` command."""

import sys

from kafkalog.cli import main

sys.exit(main())
