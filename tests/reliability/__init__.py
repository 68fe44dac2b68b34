"""The fault-injection reliability suite (issue 4): an application process, a record ledger,
a TCP fault proxy and the report that publishes ``docs/reliability.md``.

The scenarios themselves are tests under ``tests/integration/test_reliability*.py``.
"""
