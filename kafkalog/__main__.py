"""``python -m kafkalog``: the ``kafkalog`` command, for when its script is not on ``PATH``."""

import sys

from kafkalog.cli import main

sys.exit(main())
