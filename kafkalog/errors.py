"""Exception types raised by kafkalog, each marked retriable or not.

The worker decides whether to retry a failed send by looking at ``retriable`` on the exception
type, never at the text of a message.
"""

from __future__ import annotations


class KafkalogError(Exception):
    """Base class of every error kafkalog raises."""

    retriable: bool = False


class ConfigError(KafkalogError, ValueError):
    """A handler option has a bad name or value. The message names the option.

    It is a ``ValueError`` so that ``logging.config.dictConfig`` reports it as a bad value.
    """

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"kafkalog option {option!r}: {problem}")
        self.option = option


class InvariantError(KafkalogError):
    """An internal invariant was broken: a bug in kafkalog, never bad input.

    Raised where an ``assert`` would vanish under ``python -O``.
    """


class TransportError(KafkalogError):
    """Sending to Kafka failed; ``retriable`` says whether trying again may help.

    ``cause_name`` is the name of the underlying client error type (for example
    ``KafkaTimeoutError``), kept for counters and warnings.
    """

    def __init__(self, message: str, *, retriable: bool, cause_name: str = "") -> None:
        super().__init__(message)
        self.retriable = retriable
        self.cause_name = cause_name or type(self).__name__


class SecurityError(TransportError):
    """Kafka refused this client, not its records: TLS, login or permission failed.

    Retriable, deliberately: the cause is in the cluster's or the client's setup (a CA, a
    password, an ACL), which an operator fixes while the application runs. Until then records
    are held (spilled), never dead-lettered, and they flow again once the fix is in.
    """

    def __init__(self, message: str, *, cause_name: str = "") -> None:
        super().__init__(message, retriable=True, cause_name=cause_name or type(self).__name__)


class TlsVerificationError(SecurityError):
    """The broker's certificate did not verify (unknown CA, wrong host name, expired)."""

    @classmethod
    def failed(cls, why: str, *, server: str | None = None) -> TlsVerificationError:
        """The warning text every transport uses; ``why`` is the client library's reason."""
        where = f" connecting to {server}" if server else ""
        return cls(
            f"TLS verification failed{where}: {why} (check ssl_cafile, and ssl_check_hostname "
            "if the certificate names another host)",
            cause_name="TlsVerificationFailed",
        )


class AuthenticationError(SecurityError):
    """The broker rejected the SASL login (wrong user name or password, unknown mechanism)."""

    @classmethod
    def rejected(cls, why: str, *, login: str | None) -> AuthenticationError:
        """The warning text every transport uses; ``login`` names user and mechanism, never
        the password."""
        who = f" for {login}" if login else ""
        return cls(
            f"authentication failed{who}: the broker rejected the SASL login ({why}; "
            "check sasl_username, sasl_password, sasl_mechanism)",
            cause_name="AuthenticationFailed",
        )


class AuthorizationError(SecurityError):
    """The principal is not allowed to write the topic (a missing ACL)."""

    @classmethod
    def denied(cls, why: str, *, topic: str | None, login: str | None) -> AuthorizationError:
        """The warning text every transport uses; ``topic=None`` when the refused operation
        is not known."""
        who = f"{login}: " if login else ""
        if topic is None:
            return cls(f"{who}not authorised ({why}; check the principal's ACLs)",
                       cause_name="AuthorizationFailed")
        return cls(
            f"{who}not authorised to write topic {topic} ({why}; grant the principal WRITE "
            "on the topic)",
            cause_name="AuthorizationFailed",
        )


class SpillError(KafkalogError):
    """Never raised: the spill store reports what it cannot write or read through
    ``stats()`` and rate-limited warnings, never into the application.

    .. deprecated:: 0.2.0
       Kept so that ``except kafkalog.SpillError`` still imports; removed in a later release.
    """
