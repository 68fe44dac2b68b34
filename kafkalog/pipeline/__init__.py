"""The delivery pipeline: a bounded queue, a worker thread that batches, sends and retries,
and the spill for what cannot be delivered yet."""
