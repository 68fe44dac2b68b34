"""The shape of error classification that every transport shares.

A transport judges its client library's failures by exception type or error code (that part
stays in the transport); here is what it turns them into: the kinds of refusal and the
:class:`~kafkalog.errors.SecurityError` each one makes, the walk over the exceptions a failure
was raised from, and the texts of the errors every transport reports. Never by message text.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence

from kafkalog.errors import (
    AuthenticationError,
    AuthorizationError,
    SecurityError,
    TlsVerificationError,
    TransportError,
)

# How far the walk goes down an exception's causes: client libraries wrap a level or two.
CAUSE_DEPTH = 5
# What an exception of no client library's own may be retried for: the socket, the clock.
RETRIABLE_TYPES: tuple[type[BaseException], ...] = (OSError, TimeoutError)


class Refusal(enum.Enum):
    """Why Kafka refused this client rather than its records."""

    TLS = "the broker's certificate did not verify"
    LOGIN = "the broker rejected the SASL login"
    DENIED = "the principal may not do what was asked (an ACL)"


# A transport's judgement of one exception: the refusal it is and the client's reason, or None.
Judge = Callable[[BaseException], "tuple[Refusal, str] | None"]


def refused(
    kind: Refusal, why: str, *, topic: str | None, login: str | None, server: str | None = None
) -> SecurityError:
    """The :class:`~kafkalog.errors.SecurityError` for a refusal of ``kind``.

    ``why`` is the client library's reason, ``topic`` the topic being written (None: not known,
    outside a send), ``login`` who logged in how (never a password), ``server`` the broker.
    """
    if kind is Refusal.TLS:
        return TlsVerificationError.failed(why, server=server)
    if kind is Refusal.LOGIN:
        return AuthenticationError.rejected(why, login=login)
    return AuthorizationError.denied(why, topic=topic, login=login)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then the exception it was raised from, and so on (at most ``CAUSE_DEPTH``)."""
    seen: BaseException | None = exc
    for _ in range(CAUSE_DEPTH):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def refusal_in(exc: BaseException, judge: Judge) -> tuple[Refusal, str] | None:
    """The first refusal ``judge`` finds in ``exc`` or the exceptions it was raised from."""
    for cause in causes(exc):
        found = judge(cause)
        if found is not None:
            return found
    return None


def not_acknowledged(cause_name: str, detail: str = "") -> TransportError:
    """A record's result when the attempt ended before the broker acknowledged it.

    Retriable: the record may or may not have been written, and resending it is the safe side
    (a possible duplicate, never a loss). ``detail`` adds what the client ran into.
    """
    return TransportError(
        f"{cause_name}: not acknowledged in time{detail}", retriable=True, cause_name=cause_name
    )


def unexpected(
    exc: BaseException, retriable_types: tuple[type[BaseException], ...] = RETRIABLE_TYPES
) -> TransportError:
    """A TransportError for an exception that is not the client library's own error type.

    Socket-level failures (``retriable_types``) can pass; anything else (TypeError, ValueError
    from a bad record) will fail the same way every time.
    """
    name = type(exc).__name__
    return TransportError(
        f"{name}: {exc}", retriable=isinstance(exc, retriable_types), cause_name=name
    )


class TopicMissingError(TransportError):
    """The cluster answers, but the topic does not exist and the cluster does not create it.

    Retriable: records wait (in the spill) and go once somebody creates the topic. Told apart
    from an unreachable cluster by the broker's error code for the topic, never by text.
    """

    @classmethod
    def on(cls, topic: str, servers: Sequence[str]) -> TopicMissingError:
        """The text every transport uses for ``topic`` on the cluster at ``servers``."""
        return cls(
            f"topic {topic!r} does not exist on the cluster at {','.join(servers)}, which "
            "answers but does not create it on first use (auto.create.topics.enable=false): "
            f"create the topic (kafka-topics.sh --create --topic {topic}), or enable "
            "auto.create.topics.enable on the brokers",
            retriable=True,
            cause_name="TopicMissing",
        )


def invalid_topic(topic: str, why: str) -> TransportError:
    """Kafka refuses ``topic`` as a topic one may write (not retriable: dead-lettered).

    Names that break Kafka's rules are refused by the ``topic`` option at construction; what
    reaches the broker is a name it keeps for itself (``__consumer_offsets``, ...).
    """
    return TransportError(
        f"Kafka refuses topic {topic!r} as invalid for writing ({why}: an internal topic, or "
        "a name the brokers do not accept): choose another topic",
        retriable=False,
        cause_name="InvalidTopic",
    )
