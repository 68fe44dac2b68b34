"""kafkalog's options as kafka-python settings, and the checks of ``producer_config``
(kafka-python's argument names) and of compression codecs made at construction."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import kafka

from kafkalog.config import SECURITY_SETTING_OPTIONS, PipelineConfig
from kafkalog.errors import ConfigError
from kafkalog.transports.security import check_tls_files, security_options

_COMPRESSION_LIBS = {"lz4": "lz4", "zstd": "zstandard", "snappy": "snappy"}
# kafkalog's security options and the kafka-python settings they become.
_SETTING_OF: dict[str, str] = {
    option: setting for setting, option in SECURITY_SETTING_OPTIONS.items()
}


def check_producer_config(config: PipelineConfig) -> None:
    """Reject ``producer_config`` keys that kafka-python does not know, at construction.

    Otherwise a typo would surface only on the worker thread, as every record failing. A
    Java or librdkafka spelling (``linger.ms``) gets the kafka-python (or kafkalog) name.
    """
    known = set(kafka.KafkaProducer.DEFAULT_CONFIG)
    unknown = sorted(set(config.producer_config) - known)
    if unknown:
        options = {field.name for field in dataclasses.fields(config)}
        hints = [hint for hint in (_hint(name, known, options) for name in unknown) if hint]
        raise ConfigError(
            "producer_config",
            f"kafka-python does not know {unknown}"
            + (f" ({'; '.join(hints)})" if hints else " (see KafkaProducer's docs)"),
        )
    check_tls_files(config, config.producer_config.get("ssl_password"))


def _hint(name: str, known: set[str], options: set[str]) -> str | None:
    """"did you mean ..." for one unknown ``producer_config`` key, or None."""
    underscored = name.replace(".", "_").replace("-", "_")
    if underscored in options:
        # linger.ms -> linger_ms: kafkalog's own option, which producer_config may not set.
        return (f"{name!r}: did you mean {underscored!r}? It is a kafkalog option: "
                "set it on the handler")
    if underscored in known:
        return (f"{name!r}: did you mean {underscored!r}? kafka-python spells its settings "
                "with '_' where Java and librdkafka use '.'")
    close = difflib.get_close_matches(underscored, sorted(known | options), n=1)
    return f"{name!r}: did you mean {close[0]!r}?" if close else None


def security_settings(config: PipelineConfig) -> dict[str, Any]:
    """The kafka-python settings (producer, consumer or admin) for the security options."""
    return {_SETTING_OF[option]: value for option, value in security_options(config).items()}


def check_compression_available(codec: str) -> str | None:
    """The name of the missing Python package needed for ``codec``, or None if usable."""
    module = _COMPRESSION_LIBS.get(codec)
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return {"snappy": "python-snappy", "zstandard": "zstandard"}.get(module, module)
    return None
