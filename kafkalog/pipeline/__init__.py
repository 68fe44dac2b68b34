"""The delivery pipeline any producer uses: the handler, the file agent, an application's own
code. Submit ready-made records; a worker thread batches, sends and retries them, and spills
what cannot be delivered yet; each record's outcome is reported truthfully.

See :class:`Pipeline` and ``docs/architecture.md``.
"""

from kafkalog.pipeline.core import Pipeline, TransportFactory
from kafkalog.pipeline.outcome import Outcome, OutcomeCallback

__all__ = ["Outcome", "OutcomeCallback", "Pipeline", "TransportFactory"]
