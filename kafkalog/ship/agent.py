"""The file agent's loop: follow files, turn their lines into records, submit them to the
delivery pipeline, and commit each file's offset only once the lines before it are resolved.

Offsets are committed from the pipeline's resolved watermark: a file keeps, in order, the
number the pipeline gave each record it submitted and the file offset just past that record's
event. Once the watermark passes a number, every line before that offset was delivered,
durably spilled, dead-lettered or dropped (and counted), so the offset can be committed. A
partial last line or an unfinished multi-line event is never committed past.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

from kafkalog.diagnostics import RateLimitedWarnings, log
from kafkalog.pipeline import Pipeline, TransportFactory
from kafkalog.ship.building import Built
from kafkalog.ship.cadence import Cadence
from kafkalog.ship.config import ShipConfig
from kafkalog.ship.files import FileId
from kafkalog.ship.inputs import Input, build_inputs
from kafkalog.ship.multiline import Event, Joiner
from kafkalog.ship.pruning import RestingFiles
from kafkalog.ship.record import source_id
from kafkalog.ship.registry import Registry
from kafkalog.ship.tracking import FileKey, Follow, open_tail, per_file
from kafkalog.ship.watch import ChangeWatcher

# Lines longer than this are cut by the reader (and then to the record's limit, flagged).
LONG_LINE_CUT_BYTES = 1024 * 1024


_LIVE: weakref.WeakSet[ShipAgent] = weakref.WeakSet()


def live_agents() -> list[ShipAgent]:
    """The agents of this process that are running (used by :mod:`kafkalog.metrics`)."""
    return list(_LIVE)


class ShipAgent:
    """Follows the files of every input and ships their lines through one pipeline per topic.

    Not thread-safe: :meth:`run` is the loop; :meth:`request_reload` and the ``stop`` event
    are how other threads (signal handlers) talk to it.
    """

    def __init__(
        self,
        config: ShipConfig,
        *,
        transport_factory: TransportFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._transport_factory = transport_factory
        self._clock = clock
        self._wall = wall_clock
        self._warnings = RateLimitedWarnings()
        self._registry = Registry(config.state_dir, on_corrupt=config.registry_on_corrupt)
        self._pipelines: dict[str, Pipeline] = {}
        self._inputs: dict[str, Input] = {}
        self._follows: dict[FileKey, Follow] = {}
        self._resting = RestingFiles(clock=clock)  # offsets of files not open; pruned when gone
        # The latest reload asked for (a SIGHUP): taken off in one step, so that one asked for
        # while the previous is applied is kept for the next turn, never cleared unseen.
        self._reloads: deque[ShipConfig] = deque(maxlen=1)
        self._first_start = True
        self._dirty = False
        self._watcher = ChangeWatcher(None)  # started by run()
        self._cadence = Cadence(self._watcher, scan_interval_s=1.0, commit_interval_s=1.0)
        self.counters: dict[str, int] = dict.fromkeys(
            ("lines", "events", "bytes", "refused", "truncations", "long_lines",
             "files_opened", "files_closed", "registry_saves", "reloads", "scans"), 0)

    # -- set-up ----------------------------------------------------------------------------------

    def _pipeline(self, topic: str) -> Pipeline:
        pipeline = self._pipelines.get(topic)
        if pipeline is None:
            config = self._config.pipeline_config(topic)
            pipeline = Pipeline(config=config, transport_factory=self._transport_factory)
            self._pipelines[topic] = pipeline
        return pipeline

    def _build_inputs(self) -> None:
        self._inputs = build_inputs(self._config.inputs, self._pipeline)

    def _load_registry(self) -> None:
        registry = self._registry
        registry.lock()  # one agent per state directory
        states = registry.load()
        self._first_start = not states and registry.recovered_from_backup == 0
        self._resting.add_all(states)

    def _read_from(self, inp: Input) -> str:
        """Where a file found at the first start begins: the input's ``read_from``, unless
        the registry was unusable and its ``registry_on_corrupt`` policy says otherwise."""
        return self._registry.start_from or inp.config.read_from

    def request_reload(self, config: ShipConfig) -> None:
        """Apply ``config`` at the next turn of the loop (from a SIGHUP handler)."""
        self._reloads.append(config)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Ship until ``stop`` is set, then stop cleanly: flush, spill what cannot go, commit."""
        self._load_registry()
        self._build_inputs()
        self._watcher = ChangeWatcher.start(self._config.inotify)
        cadence = self._cadence = Cadence(self._watcher, **self._intervals())
        _LIVE.add(self)
        try:
            while not stop.is_set():
                if self._reloads:
                    self._reload(self._reloads.popleft())
                    cadence.reconfigure(**self._intervals())
                turn = cadence.turn(self._clock())
                if turn.scan:
                    self._scan()
                busy = self._read_all(cadence.due(turn, self._follows), turn.now)
                if turn.every:
                    self._commit()
                if turn.sweep:
                    self._close_finished()
                if turn.save:
                    self._save()
                if not busy:
                    cadence.wait(stop, turn.now)
        finally:
            _LIVE.discard(self)
            self._shutdown()

    def _intervals(self) -> dict[str, float]:
        config = self._config
        return {"scan_interval_s": config.scan_interval_ms / 1000,
                "commit_interval_s": config.commit_interval_ms / 1000}

    def _reload(self, config: ShipConfig) -> None:
        """New inputs start being followed; removed ones stop, keeping their offsets."""
        self.counters["reloads"] += 1
        self._config = dataclasses.replace(config, state_dir=self._config.state_dir)
        wanted = {i.name: i for i in config.inputs}
        for key, follow in list(self._follows.items()):
            kept = wanted.get(follow.input_name)
            if kept is None or kept != self._inputs[follow.input_name].config:
                self._rest(key, follow)
        self._build_inputs()
        log.info("kafkalog ship: reloaded %s: %d input(s)", config.source, len(config.inputs))

    def _scan(self) -> None:
        """Find the files of every input; open new ones, notice rotations and deletions."""
        seen: set[FileKey] = set()
        self.counters["scans"] += 1
        for inp in self._inputs.values():
            for path, fid in inp.discovery.scan().items():
                key = (fid.dev, fid.ino)
                seen.add(key)
                follow = self._follows.get(key)
                if follow is not None:
                    if follow.tail.fid.same_file(fid):
                        follow.renamed_to(path)
                        continue
                    if follow.tail.check_truncated():  # copytruncate: the same file, emptied
                        self._truncated(follow)
                        follow.renamed_to(path)
                        continue
                    self._forget(key, follow)  # the inode was reused: a new file
                elif self._still_resting(key, path, fid):
                    continue
                self._open(inp, path, fid)
        for key, follow in self._follows.items():
            follow.gone = key not in seen  # rotated away or deleted: drain, then close
        self._dirty = self._resting.prune(seen) > 0 or self._dirty  # files deleted for good
        self._first_start = False
        self._watcher.watch_dirs([inp.discovery for inp in self._inputs.values()])

    def _still_resting(self, key: FileKey, path: Path, fid: FileId) -> bool:
        """Whether ``path`` is a file closed as inactive that has not changed since: it stays
        closed (reopening every quiet file on every scan would cost a descriptor and a read
        each, and keep ``max_open_files`` taken by files with nothing to read)."""
        state = self._resting.get(key)
        if state is None or not state.fid.same_file(fid):
            return False
        try:
            return path.stat().st_size == state.offset
        except OSError:
            return True  # gone meanwhile: nothing to open

    def _open(self, inp: Input, path: Path, fid: FileId) -> None:
        key = (fid.dev, fid.ino)
        if len(self._follows) >= self._config.max_open_files:
            self._warnings.warn("max-open", "kafkalog ship: max_open_files (%d) reached; %s "
                                "waits", self._config.max_open_files, path)
            return
        state = self._resting.get(key)
        offset = 0
        truncations = 0
        if state is not None and state.fid.same_file(fid):
            offset, truncations = state.offset, state.truncations
        elif state is None and self._first_start and self._read_from(inp) == "tail":
            offset = -1  # its current end: the tail of a file that existed at first start
        tail = open_tail(path, offset=offset, input=inp.config.name,
                         follow_symlinks=inp.config.follow_symlinks)
        if tail is None:
            return  # gone between the scan and the open
        if state is not None and tail.read_offset == 0 and state.offset > 0:
            log.info("kafkalog ship: %s is a new file in a reused inode; reading from 0", path)
        self._resting.pop(key, None)
        self._follows[key] = Follow(
            tail=tail,
            input_name=inp.config.name,
            joiner=Joiner(inp.config.multiline,
                          timeout_s=inp.config.multiline_timeout_ms / 1000,
                          max_bytes=inp.records.builder.max_bytes),
            source=source_id(inp.records.builder.host, fid.dev, fid.ino, fid.head_hash),
            committed=tail.read_offset,
            truncations=truncations,
            last_data=self._clock(),
        )
        self._watcher.watch_file(key, tail.fileno(), str(path))
        self._cadence.hot.add(key)  # read it now, and whatever was appended before the watch
        self.counters["files_opened"] += 1
        self._dirty = True

    def _read_all(self, keys: list[FileKey], now: float) -> bool:
        """One turn over the open files ``keys``; True if any had new lines."""
        busy = False
        for key in keys:
            follow = self._follows.get(key)
            inp = None if follow is None else self._inputs.get(follow.input_name)
            if follow is None or inp is None:
                continue
            read = self._read_one(inp, follow)
            self._cadence.read(key, follow, read, now)
            busy = busy or read
        return busy

    def _read_one(self, inp: Input, follow: Follow) -> bool:
        """Read what is new in ``follow`` and offer its records; True if it had new lines
        or part of its backlog went in."""
        backlog = follow.backlog
        if backlog is not None and not self._offer(inp, follow, backlog):
            # Queue full: read no more of this file (and idle unless some of it went in).
            return follow.backlog is not backlog
        tail = follow.tail
        lines, offsets = tail.read_chunk(max(LONG_LINE_CUT_BYTES, inp.records.cut_bytes))
        if not lines:
            if tail.check_truncated():
                self._truncated(follow)
            events = follow.joiner.flush_due()
            if events:
                self._offer(inp, follow, self._events(inp, follow, events))
            return False
        follow.last_data = self._clock()
        follow.fed_end = offsets[-1]
        self.counters["lines"] += len(lines)
        self.counters["bytes"] += offsets[-1] - offsets[0]
        built = None
        if inp.records.chunked:  # a chunk at a time; the read time is the chunk's
            built = inp.records.of_lines(lines, offsets, path=str(tail.path), ino=tail.fid.ino,
                                         source=follow.source, read_time=self._wall())
        if built is None:
            events = follow.joiner.feed_lines(
                zip(lines, offsets, islice(offsets, 1, None), strict=False))
            if not events:
                return True
            built = self._events(inp, follow, events)
        self._offer(inp, follow, built)
        return True

    def _events(self, inp: Input, follow: Follow, events: list[Event]) -> Built:
        """The records of ``events``, built one by one."""
        self.counters["long_lines"] += sum(event.truncated for event in events)
        return inp.records.of_events(events, path=str(follow.tail.path),
                                     ino=follow.tail.fid.ino, source=follow.source,
                                     read_time=self._wall())

    def _offer(self, inp: Input, follow: Follow, built: Built) -> bool:
        """Submit ``built`` in order; True if all were accepted. The rest wait in the file's
        backlog (the queue is full: it blocked for ``block_timeout_ms``)."""
        count, last = inp.pipeline.submit_many(built.values, built.keys)
        if count:  # one entry per run: once ``last`` is resolved, so is all before its end
            follow.pending.append((last, built.ends[count - 1]))
            self.counters["events"] += count
        if count < len(built.values):
            follow.backlog = built.rest(count) if count else built
            self.counters["refused"] += 1
            return False
        follow.backlog = None
        return True

    def _truncated(self, follow: Follow) -> None:
        """copytruncate: the file is shorter than what was read; it starts again at 0."""
        self.counters["truncations"] += 1
        follow.truncations += 1
        follow.pending.clear()  # offsets of the old content mean nothing now
        follow.backlog = None
        follow.joiner.flush()
        follow.committed = follow.fed_end = 0
        self._dirty = True
        self._warnings.warn(f"truncated:{follow.tail.path}", "kafkalog ship: %s was truncated "
                            "(copytruncate?); reading it again from the start",
                            follow.tail.path)

    def _commit(self) -> None:
        """Advance each file's committed offset as far as its resolved records allow."""
        for follow in self._follows.values():
            if not follow.pending and follow.committed == follow.fed_end:
                continue  # all it read is committed: nothing can move (most files, idle)
            inp = self._inputs.get(follow.input_name)
            if inp is not None and follow.advance(inp.pipeline.resolved()):
                self._dirty = True

    def _close_finished(self) -> None:
        """Close files that are drained and gone, or drained and inactive."""
        inactive_s = self._config.close_inactive_ms / 1000
        now = self._clock()
        for key, follow in list(self._follows.items()):
            if not follow.drained():
                continue
            if follow.gone and follow.tail.at_eof():
                self._forget(key, follow)
            elif now - follow.last_data >= inactive_s:
                self._rest(key, follow)

    def _rest(self, key: FileKey, follow: Follow) -> None:
        """Close ``follow`` and keep its committed offset (it may be opened again)."""
        self._resting[key] = follow.state()
        self._close(key, follow)

    def _forget(self, key: FileKey, follow: Follow) -> None:
        """Close ``follow`` for good (rotated away and drained, deleted, or inode reused)."""
        self._close(key, follow)
        self._resting.pop(key, None)

    def _close(self, key: FileKey, follow: Follow) -> None:
        self._watcher.unwatch_file(key)
        self._cadence.hot.discard(key)
        follow.tail.close()
        del self._follows[key]
        self.counters["files_closed"] += 1
        self._dirty = True

    def _save(self) -> None:
        if not self._dirty:
            return
        states = [f.state() for f in self._follows.values()] + list(self._resting.values())
        self._registry.save(states)
        self.counters["registry_saves"] += 1
        self._dirty = False

    def _shutdown(self) -> None:
        """Stop reading; deliver (or spill) what is queued; commit what is resolved."""
        for pipeline in self._pipelines.values():
            pipeline.flush()
        for pipeline in self._pipelines.values():
            pipeline.close()
        self._commit()
        self._dirty = True
        self._save()
        for key, follow in list(self._follows.items()):
            self._rest(key, follow)
        self._watcher.close()
        self._registry.close()

    # -- counters ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters, the open files with their lag, and each topic's pipeline stats."""
        files = per_file(list(self._follows.values()))  # a snapshot: the loop may change it
        return {
            **self.counters,
            "registry_pruned": self._resting.pruned,
            "files": len(files),
            "lag_bytes": sum(f["lag_bytes"] for f in files.values()),
            "per_file": files,
            "inotify": {"active": self._watcher.active, **self._watcher.counters},
            "pipelines": {topic: p.stats() for topic, p in self._pipelines.items()},
        }
