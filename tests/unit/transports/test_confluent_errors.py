"""librdkafka's errors as kafkalog's: by code and librdkafka's own flags, never by text."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from kafkalog.errors import SecurityError
from kafkalog.transports.confluent_errors import classify, classify_error


@pytest.mark.parametrize(
    "code",
    [KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
     KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._QUEUE_FULL,
     KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.NOT_ENOUGH_REPLICAS,
     KafkaError.REQUEST_TIMED_OUT, KafkaError.THROTTLING_QUOTA_EXCEEDED],
)
def test_transient_codes_are_retriable(code: int) -> None:
    err = classify_error(KafkaError(code))
    assert err.retriable
    assert err.cause_name == KafkaError(code).name()


@pytest.mark.parametrize(
    "code",
    [KafkaError.MSG_SIZE_TOO_LARGE, KafkaError._BAD_MSG, KafkaError.INVALID_RECORD,
     KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_TIMESTAMP, KafkaError.TOPIC_EXCEPTION,
     KafkaError._UNKNOWN_PARTITION, KafkaError._INVALID_ARG],
)
def test_codes_for_records_kafka_refuses_are_not_retriable(code: int) -> None:
    assert not classify_error(KafkaError(code)).retriable


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (KafkaError._SSL, "TlsVerificationFailed", "TLS verification failed"),
        (KafkaError._AUTHENTICATION, "AuthenticationFailed", "authentication failed for bob"),
        (KafkaError.SASL_AUTHENTICATION_FAILED, "AuthenticationFailed", "authentication failed"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "AuthorizationFailed",
         "not authorised to write topic logs"),
        (KafkaError.CLUSTER_AUTHORIZATION_FAILED, "AuthorizationFailed",
         "not authorised to write topic logs"),
    ],
)
def test_tls_login_and_acl_refusals_are_named_and_hold_records(
    code: int, kind: str, words: str
) -> None:
    err = classify_error(KafkaError(code, "details"), topic="logs", login="bob")
    assert isinstance(err, SecurityError)  # the worker's warning says an operator must act
    assert err.cause_name == kind
    assert err.retriable  # held (spilled) until an operator fixes it, never dead-lettered
    assert words in str(err)


@pytest.mark.parametrize("reason", ["timed out", "Message size too large", "retriable", ""])
def test_the_message_text_does_not_change_the_classification(reason: str) -> None:
    assert classify_error(KafkaError(KafkaError._MSG_TIMED_OUT, reason)).retriable
    assert not classify_error(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, reason)).retriable


def test_librdkafkas_own_flags_make_an_error_retriable() -> None:
    # A fatal error breaks the producer, not the record: a new producer may deliver it.
    assert classify_error(KafkaError(KafkaError.INVALID_RECORD, fatal=True)).retriable
    assert classify_error(KafkaError(KafkaError.INVALID_RECORD, retriable=True)).retriable


def test_exceptions_are_classified_by_type() -> None:
    wrapped = classify(KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
    assert not wrapped.retriable
    assert wrapped.cause_name == "MSG_SIZE_TOO_LARGE"
    assert classify(BufferError("queue full")).retriable
    assert classify(ConnectionResetError()).retriable
    assert not classify(TypeError("bad value")).retriable
