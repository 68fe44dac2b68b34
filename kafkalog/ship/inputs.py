"""An input's runtime parts, built from its config: what finds its files, how their lines
become records, and the pipeline of its topic."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from kafkalog.pipeline import Pipeline
from kafkalog.ship.building import InputRecords
from kafkalog.ship.config import InputConfig
from kafkalog.ship.discovery import Discovery
from kafkalog.ship.parsers import parser_for
from kafkalog.ship.record import RecordBuilder

# Room left in a request for the batch and record headers and the key (as the handler leaves).
RECORD_OVERHEAD_BYTES = 1024


@dataclasses.dataclass
class Input:
    """An input's runtime parts: what finds its files and how their events become records."""

    config: InputConfig
    discovery: Discovery
    records: InputRecords
    pipeline: Pipeline


def build_inputs(configs: Sequence[InputConfig],
                 pipeline_for: Callable[[str], Pipeline]) -> dict[str, Input]:
    """Each input of ``configs`` by name, with the pipeline ``pipeline_for`` gives its topic."""
    inputs: dict[str, Input] = {}
    for each in configs:
        pipeline = pipeline_for(each.topic)
        max_bytes = pipeline.config.max_request_size - RECORD_OVERHEAD_BYTES
        builder = RecordBuilder(schema=each.schema, static_fields=each.static_fields,
                                max_bytes=max_bytes, json_fields=each.format == "json")
        inputs[each.name] = Input(
            config=each,
            discovery=Discovery(each.paths, each.exclude, follow_symlinks=each.follow_symlinks),
            records=InputRecords(parser=parser_for(each.format), builder=builder,
                                 format=each.format, key=each.key, multiline=each.multiline),
            pipeline=pipeline,
        )
    return inputs
