"""What every transport shares (base, errors, security), without a client library or a broker."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kafkalog.config import HandlerConfig
from kafkalog.errors import (
    AuthenticationError,
    AuthorizationError,
    TlsVerificationError,
    TransportError,
)
from kafkalog.transports.base import WAIT_SLICE_S, BaseTransport
from kafkalog.transports.errors import (
    CAUSE_DEPTH,
    Refusal,
    causes,
    not_acknowledged,
    refusal_in,
    refused,
    unexpected,
)
from kafkalog.transports.security import login_of, security_options


class FakeClock:
    """A clock that moves only when a wait is made on it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Bare(BaseTransport):
    """The base alone: what it gives every transport."""


def config(**options: Any) -> HandlerConfig:
    return HandlerConfig.from_options({"topic": "logs", **options})


# -- base: where records go, and waits that interrupt() cuts short --------------------------------


def test_a_pinned_partition_applies_to_the_handlers_own_topic_only() -> None:
    transport = Bare(config(partition=3))
    assert transport._destination(None) == ("logs", 3)
    assert transport._destination("dead-letters") == ("dead-letters", None)
    assert Bare(config())._destination(None) == ("logs", None)


def test_waits_are_cut_into_slices_that_end_at_the_deadline() -> None:
    clock = FakeClock()
    transport = Bare(config(), clock=clock)
    slices = []
    for wait_s in transport._slices(clock.now + 0.25):
        slices.append(wait_s)
        clock.now += wait_s
    assert slices == pytest.approx([WAIT_SLICE_S, WAIT_SLICE_S, 0.05])


def test_interrupt_ends_the_slices_unless_the_wait_is_not_interruptible() -> None:
    clock = FakeClock()
    transport = Bare(config(), clock=clock)
    transport.interrupt()
    assert list(transport._slices(clock.now + 10)) == []
    uninterruptible = []
    for wait_s in transport._slices(clock.now + 0.1, interruptible=False, slice_s=0.05):
        uninterruptible.append(wait_s)
        clock.now += wait_s
    assert uninterruptible == pytest.approx([0.05, 0.05])


def test_waiting_on_an_event_returns_once_it_is_set_or_interrupt_is_called() -> None:
    transport = Bare(config())
    done = threading.Event()
    done.set()
    assert transport._wait(done, 30) is True
    pending = threading.Event()
    threading.Timer(0.05, transport.interrupt).start()
    started = time.monotonic()
    assert transport._wait(pending, 30) is False
    assert time.monotonic() - started < 15.0  # a slice or two, not the 30 s asked


def test_setup_runs_last_so_a_transport_needs_no_constructor_of_its_own() -> None:
    seen: list[str | None] = []

    class Recording(Bare):
        def _setup(self) -> None:
            seen.append(self._topic)

    Recording(config())
    assert seen == ["logs"]


# -- security: the options that apply, and who logs in -------------------------------------------


def test_who_logs_in_is_named_without_the_password(tmp_path: Any) -> None:
    sasl = config(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                  sasl_username="writer", sasl_password="Secret-Password-1")
    assert login_of(sasl) == "SASL user 'writer' (SCRAM-SHA-512)"
    gssapi = config(security_protocol="SASL_PLAINTEXT", sasl_mechanism="GSSAPI")
    assert login_of(gssapi) == "SASL (GSSAPI)"
    cert = tmp_path / "client.pem"
    cert.write_text("not read here")
    assert login_of(config(security_protocol="SSL", ssl_certfile=str(cert))) == (
        f"the client certificate {cert}"
    )
    assert login_of(config()) is None


def test_security_options_name_what_applies_with_the_password_revealed(tmp_path: Any) -> None:
    assert security_options(config()) == {"security_protocol": "PLAINTEXT"}
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    options = security_options(config(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="writer",
        sasl_password="Secret-Password-1", ssl_cafile=str(ca),
    ))  # fmt: skip
    assert options == {
        "security_protocol": "SASL_SSL", "ssl_check_hostname": True, "ssl_cafile": str(ca),
        "sasl_mechanism": "PLAIN", "sasl_username": "writer", "sasl_password": "Secret-Password-1",
    }  # fmt: skip


# -- errors: the shape both transports give their classification ---------------------------------


@pytest.mark.parametrize(
    ("kind", "cls", "words"),
    [
        (Refusal.TLS, TlsVerificationError, "TLS verification failed"),
        (Refusal.LOGIN, AuthenticationError, "authentication failed for bob"),
        (Refusal.DENIED, AuthorizationError, "bob: not authorised to write topic logs"),
    ],
)
def test_each_kind_of_refusal_makes_its_retriable_security_error(
    kind: Refusal, cls: type[TransportError], words: str
) -> None:
    err = refused(kind, "why", topic="logs", login="bob")
    assert type(err) is cls
    assert err.retriable
    assert words in str(err)


def test_a_refusal_outside_a_send_does_not_name_a_topic() -> None:
    err = refused(Refusal.DENIED, "why", topic=None, login=None)
    assert "not authorised (why; check the principal's ACLs)" in str(err)


def chain(depth: int) -> BaseException:
    """An exception raised from ``depth - 1`` others, the innermost a PermissionError."""
    exc: BaseException = PermissionError("innermost")
    for level in range(depth - 1):
        outer = RuntimeError(f"level {level}")
        outer.__cause__ = exc
        exc = outer
    return exc


def test_the_walk_over_causes_is_bounded_and_judges_by_type() -> None:
    def judge(exc: BaseException) -> tuple[Refusal, str] | None:
        return (Refusal.DENIED, type(exc).__name__) if isinstance(exc, PermissionError) else None

    assert len(list(causes(chain(2)))) == 2
    assert refusal_in(chain(CAUSE_DEPTH), judge) == (Refusal.DENIED, "PermissionError")
    assert refusal_in(chain(CAUSE_DEPTH + 1), judge) is None


def test_an_unacknowledged_record_is_retriable_and_says_what_the_client_ran_into() -> None:
    err = not_acknowledged("_MSG_TIMED_OUT", " (last client error: _TRANSPORT: refused)")
    assert err.retriable
    assert err.cause_name == "_MSG_TIMED_OUT"
    assert str(err) == (
        "_MSG_TIMED_OUT: not acknowledged in time (last client error: _TRANSPORT: refused)"
    )


def test_other_exceptions_are_retriable_only_for_the_socket_and_the_clock() -> None:
    assert unexpected(ConnectionResetError()).retriable
    assert unexpected(TimeoutError()).retriable
    assert not unexpected(TypeError("bad value")).retriable
    assert unexpected(BufferError(), (BufferError,)).retriable
    assert unexpected(TypeError("bad value")).cause_name == "TypeError"
