"""Handler options: one typed, validated, frozen place, built from dictConfig-style values.

Every option can be given as a plain string or number (as it arrives from a config file);
names and units follow Kafka's producer settings (``linger_ms``, ``batch_size`` in bytes). A bad
name or value raises :class:`~kafkalog.errors.ConfigError` (a ``ValueError``) naming the option,
when the handler is built rather than at the first log call.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
import platformdirs

from kafkalog.errors import ConfigError
from kafkalog.formatting.redaction import DEFAULT_REDACT_KEYS, key_words

KeyFunc = Callable[[logging.LogRecord], str | bytes | None]

OverflowPolicy = Literal["spill", "drop_newest", "drop_oldest", "block"]
Acks = Literal[0, 1, -1]

OVERFLOW_POLICIES: tuple[str, ...] = ("spill", "drop_newest", "drop_oldest", "block")
COMPRESSION_TYPES: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")
# The client library that talks to Kafka; "confluent" needs the kafkalog[confluent] extra.
TRANSPORTS: tuple[str, ...] = ("kafka-python", "confluent")
SCHEMAS: tuple[str, ...] = ("default", "ecs")

# Kafka's own rule for topic names (org.apache.kafka.common.internals.Topic).
_TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")

DEFAULT_BOOTSTRAP = "localhost:9092"
AUTO_SPILL_DIR = "auto"
SPILL_FSYNC_POLICIES: tuple[str, ...] = ("always", "interval", "never")
SPILL_FULL_POLICIES: tuple[str, ...] = ("drop_oldest", "drop_newest")
BOOTSTRAP_ENV = "KAFKALOG_BOOTSTRAP_SERVERS"


@dataclasses.dataclass(frozen=True)
class HandlerConfig:
    """All options of a :class:`~kafkalog.KafkaHandler`, validated.

    Build it with :meth:`from_options`; the handler does that for its keyword arguments.
    """

    topic: str
    bootstrap_servers: tuple[str, ...] = (DEFAULT_BOOTSTRAP,)
    # Partitioning: ``key`` is a record attribute name or a callable; ``partition`` pins one.
    key: str | KeyFunc | None = None
    partition: int | None = None
    # Producer settings, Kafka names and units.
    acks: Acks = -1
    compression_type: str = "none"
    linger_ms: int = 5
    batch_size: int = 16384
    max_request_size: int = 1048576
    delivery_timeout_ms: int = 120000
    request_timeout_ms: int = 30000
    retry_backoff_ms: int = 100
    retry_backoff_max_ms: int = 1000
    client_id: str | None = None
    producer_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    transport: str = "kafka-python"
    # Connecting to a secured cluster (TLS, SASL); names as in Kafka's client settings.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    # The in-memory queue between emit() and the worker.
    queue_max_records: int = 100000
    queue_max_bytes: int = 64 * 1024 * 1024
    overflow_policy: OverflowPolicy = "spill"
    block_timeout_ms: int = 100
    # Shutdown and confirmed ("sync") records.
    close_timeout_ms: int = 5000
    sync_level: int | None = None
    sync_timeout_ms: int = 5000
    # Record layout.
    schema: str = "default"
    static_fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Keys whose values are masked in extras, bound context and static fields; () turns it off.
    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
    # The spill store: records Kafka can not take yet, on local disk. ``spill_dir=None``
    # disables it; the default is a per-application directory chosen with platformdirs.
    spill_dir: str | None = AUTO_SPILL_DIR
    app_name: str | None = None
    spill_fsync: str = "interval"
    spill_fsync_interval_ms: int = 500
    spill_max_bytes: int = 1024**3
    spill_segment_bytes: int = 16 * 1024**2
    spill_full_policy: str = "drop_oldest"
    spill_after_ms: int = 1000
    dead_letter_topic: str | None = None

    def spill_path(self) -> Path | None:
        """The directory the spill store uses, or None if spilling is off."""
        if self.spill_dir is None:
            return None
        if self.spill_dir != AUTO_SPILL_DIR:
            return Path(self.spill_dir).expanduser()
        app = self.app_name or _default_app_name()
        return Path(platformdirs.user_state_dir("kafkalog")) / app / self.topic

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> HandlerConfig:
        """Validate ``options`` (strings and numbers as found in config files) into a config."""
        known = {f.name for f in dataclasses.fields(cls)}
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(name, f"unknown option{hint}")
        if "topic" not in options or options["topic"] in (None, ""):
            raise ConfigError("topic", "is required")

        o = dict(options)
        values: dict[str, Any] = {
            "topic": _topic(o.pop("topic")),
            "bootstrap_servers": _bootstrap(o.pop("bootstrap_servers", None)),
        }
        if "key" in o:
            values["key"] = _key(o.pop("key"))
        if "partition" in o:
            p = o.pop("partition")
            values["partition"] = None if p in (None, "") else _int("partition", p, minimum=0)
        if "acks" in o:
            values["acks"] = _acks(o.pop("acks"))
        if "compression_type" in o:
            values["compression_type"] = _compression(o.pop("compression_type"))
        for name, minimum in _INT_OPTIONS.items():
            if name in o:
                values[name] = _int(name, o.pop(name), minimum=minimum)
        if "client_id" in o:
            cid = o.pop("client_id")
            values["client_id"] = None if cid is None else _str("client_id", cid)
        if "producer_config" in o:
            values["producer_config"] = _mapping("producer_config", o.pop("producer_config"))
        if "transport" in o:
            values["transport"] = _transport(o.pop("transport"))
        values.update(_security(o))
        if "overflow_policy" in o:
            values["overflow_policy"] = _choice(
                "overflow_policy", o.pop("overflow_policy"), OVERFLOW_POLICIES
            )
        if "sync_level" in o:
            values["sync_level"] = _level("sync_level", o.pop("sync_level"))
        if "schema" in o:
            values["schema"] = _choice("schema", o.pop("schema"), SCHEMAS)
        if "static_fields" in o:
            values["static_fields"] = _mapping("static_fields", o.pop("static_fields"))
        if "redact_keys" in o:
            values["redact_keys"] = _redact_keys(o.pop("redact_keys"))
        if "spill_dir" in o:
            values["spill_dir"] = _spill_dir(o.pop("spill_dir"))
        if "app_name" in o:
            app = o.pop("app_name")
            values["app_name"] = None if app is None else _path_part("app_name", app)
        if "spill_fsync" in o:
            values["spill_fsync"] = _choice("spill_fsync", o.pop("spill_fsync"),
                                            SPILL_FSYNC_POLICIES)
        if "spill_full_policy" in o:
            values["spill_full_policy"] = _choice(
                "spill_full_policy", o.pop("spill_full_policy"), SPILL_FULL_POLICIES
            )
        if "dead_letter_topic" in o:
            dlt = o.pop("dead_letter_topic")
            values["dead_letter_topic"] = None if dlt in (None, "") else _topic(dlt)
        assert not o, f"option(s) validated nowhere: {sorted(o)}"  # a bug in this module

        config = cls(**values)
        config._check_relations()
        return config

    def _check_relations(self) -> None:
        if self.retry_backoff_max_ms < self.retry_backoff_ms:
            raise ConfigError(
                "retry_backoff_max_ms",
                f"must be >= retry_backoff_ms ({self.retry_backoff_ms}), "
                f"got {self.retry_backoff_max_ms}",
            )
        if self.max_request_size < 4096:
            raise ConfigError("max_request_size", "must be at least 4096 bytes")
        if self.queue_max_bytes < self.max_request_size:
            raise ConfigError(
                "queue_max_bytes",
                f"must be >= max_request_size ({self.max_request_size}) so that one "
                "record of the largest size fits",
            )
        own = {f.name for f in dataclasses.fields(self)}
        reserved = {"key_serializer", "value_serializer", "partitioner", "enable_idempotence",
                    "max_block_ms", "bootstrap_timeout_ms"}
        clash = (own | reserved) & set(self.producer_config)
        if clash:
            raise ConfigError(
                "producer_config",
                f"sets {sorted(clash)}: these are handler options or managed by kafkalog; "
                "set the handler options themselves instead",
            )
        _check_security(self)


# Integer options and their minimum values.
_INT_OPTIONS: dict[str, int] = {
    "linger_ms": 0,
    "batch_size": 1,
    "max_request_size": 1,
    "delivery_timeout_ms": 1,
    "request_timeout_ms": 1,
    "retry_backoff_ms": 0,
    "retry_backoff_max_ms": 0,
    "queue_max_records": 1,
    "queue_max_bytes": 1,
    "block_timeout_ms": 0,
    "close_timeout_ms": 0,
    "sync_timeout_ms": 0,
    "spill_fsync_interval_ms": 1,
    "spill_max_bytes": 1,
    "spill_segment_bytes": 4096,
    "spill_after_ms": 0,
}


def _default_app_name() -> str:
    """The running program's name, for the default spill directory."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    path = Path(argv0) if argv0 not in ("", "-", "-c", "-m") else None
    name = path.stem if path is not None else ""
    if path is not None and name == "__main__":  # python -m package: the package's name
        name = path.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._")
    return name or "python"


def _spill_dir(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError("spill_dir", f"must be a directory path or None, got {value!r}")
    return value


def _path_part(name: str, value: Any) -> str:
    text = _str(name, value)
    if not re.match(r"^[A-Za-z0-9._-]+$", text) or text in (".", ".."):
        raise ConfigError(name, f"{text!r} must be a plain name (letters, digits, '.', '_', '-')")
    return text


def _int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip().replace("_", ""))
        except ValueError:
            raise ConfigError(name, f"must be an integer, got {value!r}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    return value


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(name, f"must be a non-empty string, got {value!r}")
    return value


def _choice(name: str, value: Any, choices: Sequence[str]) -> Any:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return text


def _topic(value: Any) -> str:
    topic = _str("topic", value)
    if not _TOPIC_RE.match(topic) or topic in (".", ".."):
        raise ConfigError(
            "topic",
            f"{topic!r} is not a valid Kafka topic name "
            "(1-249 characters of a-z, A-Z, 0-9, '.', '_', '-')",
        )
    return topic


def _bootstrap(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        value = os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(part).strip() for part in value]
    else:
        raise ConfigError(
            "bootstrap_servers", f"must be 'host:port,host:port' or a list, got {value!r}"
        )
    servers = tuple(item for item in items if item)
    if not servers:
        raise ConfigError("bootstrap_servers", "is empty")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("bootstrap_servers", f"{server!r} is not host:port")
    return servers


def _key(value: Any) -> str | KeyFunc | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if not value.isidentifier():
            raise ConfigError(
                "key", f"{value!r} is not a record attribute name (use extra={{...}} names)"
            )
        return value
    if callable(value):
        return value  # type: ignore[no-any-return]
    raise ConfigError("key", f"must be an attribute name or a callable, got {value!r}")


def _acks(value: Any) -> Acks:
    text = str(value).strip().lower()
    mapping: dict[str, Acks] = {"0": 0, "1": 1, "all": -1, "-1": -1}
    if isinstance(value, bool) or text not in mapping:
        raise ConfigError("acks", f"must be 0, 1 or all; got {value!r}")
    return mapping[text]


def _transport(value: Any) -> str:
    name = str(_choice("transport", value, TRANSPORTS))
    # find_spec looks for the package without importing it (and librdkafka with it).
    if name == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        raise ConfigError(
            "transport",
            "'confluent' needs the confluent-kafka package (pip install 'kafkalog[confluent]')",
        )
    return name


def _compression(value: Any) -> str:
    name = "none" if value is None else _choice("compression_type", value, COMPRESSION_TYPES)
    return str(name)


def _level(name: str, value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        level = logging.getLevelName(text.upper())
        if isinstance(level, int):
            return level
    raise ConfigError(name, f"must be a level name such as 'CRITICAL' or a number, got {value!r}")


def _redact_keys(value: Any) -> tuple[str, ...]:
    """None/""/"none"/"off"/[] turn redaction off; a string is a comma-separated list."""
    if value is None:
        return ()
    if isinstance(value, str):
        if value.strip().lower() in ("", "none", "off"):
            return ()
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        raise ConfigError(
            "redact_keys", f"must be a list of key names or a comma-separated string, got {value!r}"
        )
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError("redact_keys", f"entries must be strings, got {item!r}")
        text = item.strip()
        if not text and isinstance(value, str):
            continue  # "password, token," - a trailing comma
        if not key_words(text):
            raise ConfigError("redact_keys", f"{item!r} has no letters or digits")
        if text not in keys:
            keys.append(text)
    return tuple(keys)


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        # A JSON object in one string, for config formats that have no mappings (INI files).
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ConfigError(name, "must be a mapping or a JSON object string") from None
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(name, f"keys must be strings, got {key!r}")
    return dict(value)


# -- connecting to a secured cluster ------------------------------------------------------------

SECURITY_PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: tuple[str, ...] = (
    "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI",
)  # fmt: skip
# The mechanisms that log in with sasl_username and sasl_password.
PASSWORD_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_PASSWORD_ENV = "KAFKALOG_SASL_PASSWORD"
# kafka-python settings that a handler option sets: producer_config must not set them too,
# or which of the two wins would be a guess.
SECURITY_SETTING_OPTIONS: dict[str, str] = {
    "security_protocol": "security_protocol",
    "sasl_mechanism": "sasl_mechanism",
    "sasl_plain_username": "sasl_username",
    "sasl_plain_password": "sasl_password",
    "ssl_cafile": "ssl_cafile",
    "ssl_certfile": "ssl_certfile",
    "ssl_keyfile": "ssl_keyfile",
    "ssl_check_hostname": "ssl_check_hostname",
}
_SSL_FILE_OPTIONS: tuple[str, ...] = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Secret:
    """A password that shows as ``'***'`` in every ``repr`` and ``str``.

    Holding it in this wrapper, rather than a plain string, keeps it out of the handler's
    repr, its config's repr, tracebacks that print locals, and any message that formats the
    config. Only the transport calls :meth:`reveal`, to hand it to the Kafka client.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _security(o: dict[str, Any]) -> dict[str, Any]:
    """Pop and check the security options of ``o`` one by one (relations: _check_security)."""
    values: dict[str, Any] = {}
    if "security_protocol" in o:
        values["security_protocol"] = _upper_choice(
            "security_protocol", o.pop("security_protocol"), SECURITY_PROTOCOLS
        )
    if "sasl_mechanism" in o:
        mech = o.pop("sasl_mechanism")
        values["sasl_mechanism"] = (
            None if mech in (None, "") else _upper_choice("sasl_mechanism", mech, SASL_MECHANISMS)
        )
    if "sasl_username" in o:
        user = o.pop("sasl_username")
        values["sasl_username"] = None if user in (None, "") else _str("sasl_username", user)
    if "sasl_password" in o:
        values["sasl_password"] = _password(o.pop("sasl_password"))
    for name in _SSL_FILE_OPTIONS:
        if name in o:
            values[name] = _readable_file(name, o.pop(name))
    if "ssl_check_hostname" in o:
        values["ssl_check_hostname"] = _bool("ssl_check_hostname", o.pop("ssl_check_hostname"))
    # The environment fills in the password only where one is needed, so that a variable
    # left set for another program never turns a plain connection into a SASL one.
    mech = values.get("sasl_mechanism")
    if values.get("sasl_password") is None and mech in PASSWORD_MECHANISMS:
        from_env = os.environ.get(SASL_PASSWORD_ENV)
        if from_env:
            values["sasl_password"] = Secret(from_env)
    return values


def _upper_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    # Kafka spells these in capitals; accept any case, as Kafka's own clients do.
    text = value.strip().upper() if isinstance(value, str) else value
    if text not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return str(text)


def _password(value: Any) -> Secret | None:
    if value is None or value == "":
        return None
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        # The value itself is not shown: a mistyped password is still a password.
        raise ConfigError("sasl_password", f"must be a string, got a {type(value).__name__}")
    return Secret(value)


def _readable_file(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    path = Path(_str(name, value)).expanduser()
    if not path.is_file():
        raise ConfigError(name, f"{str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise ConfigError(name, f"{str(path)!r} is not readable by this process")
    return str(path)


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def _check_security(c: HandlerConfig) -> None:
    """The security options must make one consistent way of connecting."""
    for setting, option in SECURITY_SETTING_OPTIONS.items():
        if setting in c.producer_config and setting != option:  # equal names: checked before
            raise ConfigError(
                "producer_config", f"sets {setting!r}: use the handler option {option!r} instead"
            )
    uses_tls = c.security_protocol in ("SSL", "SASL_SSL")
    uses_sasl = c.security_protocol.startswith("SASL_")
    if not uses_tls:
        for name in _SSL_FILE_OPTIONS:
            if getattr(c, name) is not None:
                raise ConfigError(
                    name, f"is set but security_protocol is {c.security_protocol}; "
                    "use SSL or SASL_SSL to connect with TLS",
                )  # fmt: skip
    if c.ssl_keyfile is not None and c.ssl_certfile is None:
        raise ConfigError("ssl_keyfile", "needs ssl_certfile (the client certificate)")
    if uses_tls and "ssl_context" in c.producer_config and (
        c.ssl_cafile or c.ssl_certfile or not c.ssl_check_hostname
    ):
        raise ConfigError(
            "producer_config",
            "sets 'ssl_context' together with ssl_* handler options; use one or the other",
        )
    if not uses_sasl:
        for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
            if getattr(c, name) is not None:
                raise ConfigError(
                    name, f"is set but security_protocol is {c.security_protocol}; "
                    "use SASL_SSL (or SASL_PLAINTEXT) to log in with SASL",
                )  # fmt: skip
        return
    if c.sasl_mechanism is None:
        raise ConfigError(
            "sasl_mechanism",
            f"is required with security_protocol {c.security_protocol} "
            f"(one of {', '.join(SASL_MECHANISMS)})",
        )
    if c.sasl_mechanism in PASSWORD_MECHANISMS:
        if c.sasl_username is None:
            raise ConfigError("sasl_username", f"is required for {c.sasl_mechanism}")
        if c.sasl_password is None:
            raise ConfigError(
                "sasl_password",
                f"is required for {c.sasl_mechanism}: set it, or the {SASL_PASSWORD_ENV} "
                "environment variable",
            )
    elif c.sasl_mechanism == "OAUTHBEARER" and "sasl_oauth_token_provider" not in c.producer_config:
        raise ConfigError(
            "sasl_mechanism", "OAUTHBEARER needs producer_config['sasl_oauth_token_provider']"
        )
