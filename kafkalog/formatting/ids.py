"""Who wrote a record: the host name and a record id unique across threads and processes, both
renewed in a child after ``os.fork()``.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from typing import Final

__all__ = ["current_host", "current_ids", "new_record_id"]


def _hostname() -> str:
    try:
        return socket.gethostname()
    except Exception:  # a broken resolver config must not break logging
        return "unknown"


def _new_id_prefix() -> str:
    # 64 random bits per process: two processes colliding is ~2**-64 per pair.
    return os.urandom(8).hex() + "-"


_host = _hostname()
_id_prefix = _new_id_prefix()

# Ids are made 256 at a time: counter value n = block * 256 + low is written as the block
# in hex followed by two hex digits from _HEX2, which is hex(n). A record then costs a
# next() on a list iterator instead of formatting an int (about 5% of a log call).
# itertools.count.__next__ and a list iterator's __next__ are single C calls, atomic under
# the GIL: each block, and each id in it, is handed out once without a lock. Two threads
# that find the current block used up each take a new one; the ids left in the block that
# is replaced are skipped, never repeated.
_HEX2: Final = tuple(f"{i:02x}" for i in range(256))
_id_blocks: Iterator[int] = itertools.count(0)
_ids: Iterator[str] = iter(())


def _new_id_block() -> Iterator[str]:
    """Make the next block of ids the current one and return it."""
    global _ids  # noqa: PLW0603 - read on the hot path as a plain global
    block = next(_id_blocks)
    if block:
        head = f"{_id_prefix}{block:x}"
        ids = iter([head + low for low in _HEX2])
    else:  # 1 to 255: no leading zero, and 0 is not used
        ids = iter([f"{_id_prefix}{n:x}" for n in range(1, 256)])
    _ids = ids
    return ids


def new_record_id() -> str:
    """Return a new id, unique across threads and (forked) processes.

    Format: 16 lowercase hex digits of per-process randomness, ``-``, then a
    per-process counter in hex, e.g. ``"9f86d081884c7d65-1a"``.  Costs one
    ``next()`` on a block of ids formatted 256 at a time - no ``uuid4`` per
    call.  The random prefix is regenerated in a child after ``os.fork()``.
    """
    rid = next(_ids, None)
    return rid if rid is not None else next(_new_id_block())


def current_ids() -> Iterator[str]:
    """The block :func:`new_record_id` is handing out ids from.

    A hot path that cannot afford a call per id keeps this iterator in a global of its own
    and takes ids with ``next()``; when it runs dry it calls :func:`new_record_id` and then
    this again, so every caller draws from one sequence. Such a global must be emptied in a
    forked child, or the child would repeat the parent's ids.
    """
    return _ids


def current_host() -> str:
    """The host name written into records (looked up again in a forked child).

    Modules that read it on a hot path keep a copy; they refresh it in their own
    ``os.register_at_fork`` hook, which runs after this module's because this module, being
    imported first, registered first.
    """
    return _host


def _after_fork_in_child() -> None:
    # The child inherits the parent's prefix and counter position; without a
    # fresh prefix both processes would hand out the same ids.  The hostname
    # is refreshed too (the child may have entered a new UTS namespace).
    global _host, _id_prefix, _id_blocks, _ids  # noqa: PLW0603 - hot-path reads stay plain globals
    _id_prefix = _new_id_prefix()
    _id_blocks = itertools.count(0)
    _ids = iter(())
    _host = _hostname()


if hasattr(os, "register_at_fork"):  # absent on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
