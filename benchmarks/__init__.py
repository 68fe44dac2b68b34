"""kafkalog's benchmark suite: ``python -m benchmarks [--quick]`` (see ``__main__``)."""
