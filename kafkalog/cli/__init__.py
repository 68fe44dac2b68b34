"""The ``kafkalog`` command; one module per subcommand, the work lives in the parts."""

from kafkalog.cli.main import main

__all__ = ["main"]
