"""redact_keys: values under sensitive keys never reach the JSON output, at any depth."""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalog import ConfigError, KafkaHandler
from kafkalog.config import HandlerConfig
from kafkalog.context import bound
from kafkalog.formatting import JsonFormatter
from kafkalog.formatting.redaction import DEFAULT_REDACT_KEYS, MASK, Redactor
from kafkalog.testing import MemoryTransport

MARKER = "SECRETVALUE"  # upper case: the ordinary text generated below is lower case

# Spellings of the default keys as they turn up in real code.
SENSITIVE_KEYS = [
    "password", "PASSWORD", "db_password", "dbPassword", "password2", "user-passwd",
    "secret", "client_secret", "ClientSecret", "token", "access_token", "authToken",
    "x-auth-token", "api_key", "apiKey", "APIKey", "apikey", "X-Api-Key", "Authorization",
    "proxy_authorization", "cookie", "Cookie", "set-cookie", "Set-Cookie", "setCookie",
]
# None of the default words can be spelled without 'e', 'o' or 'w'.
ORDINARY_ALPHABET = "abcdfghijklmnpqrstuvxyz0123456789_-"


def record(**extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("app", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    rec.__dict__.update(extra)
    return rec


def encoded(formatter: JsonFormatter, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(formatter.encode(record(**extra)))
    return out


# -- the matching rule, spelled out -------------------------------------------------------------


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_default_keys_match_whole_words_in_any_case_and_style(key: str) -> None:
    assert Redactor(DEFAULT_REDACT_KEYS).matches(key)


@pytest.mark.parametrize(
    "key",
    ["user", "passwords", "passwordless", "secretary", "tokens", "tokenizer", "api", "key",
     "keys", "cookies_enabled", "author", "message_id", "", "_"],
)
def test_keys_that_only_contain_a_default_word_as_part_of_a_longer_word_do_not_match(
    key: str,
) -> None:
    assert not Redactor(DEFAULT_REDACT_KEYS).matches(key)


def test_custom_multi_word_entry_matches_its_words_in_order_only() -> None:
    redactor = Redactor(["credit_card"])
    assert redactor.matches("creditCard")
    assert redactor.matches("customer-credit-card-number")
    assert not redactor.matches("card_credit")
    assert not redactor.matches("credit")


def test_non_string_keys_are_matched_by_their_text() -> None:
    redactor = Redactor(DEFAULT_REDACT_KEYS)
    assert redactor.field("x", {b"password": "p", 1: "one"}) == {b"password": MASK, 1: "one"}


def test_a_redactor_needs_at_least_one_usable_key() -> None:
    with pytest.raises(ValueError, match="empty"):
        Redactor([])
    with pytest.raises(ValueError, match="no letters or digits"):
        Redactor(["password", "--"])


# -- masking ------------------------------------------------------------------------------------


def test_values_are_masked_at_every_depth_and_in_every_container() -> None:
    @dataclasses.dataclass
    class Login:
        user: str
        password: str

    Pair = collections.namedtuple("Pair", "token scope")
    value = {
        "user": "ann",
        "headers": [("Accept", "*/*"), {"Authorization": "Bearer abc"}],
        "nested": {"deeper": {"db": {"password": {"any": ["type"]}}}},
        "login": Login("ann", "hunter2"),
        "pair": Pair("t-1", "read"),
        "tags": {"a", "b"},
    }
    out = encoded(JsonFormatter(), request=value)["request"]
    assert out["user"] == "ann"
    assert out["headers"] == [["Accept", "*/*"], {"Authorization": MASK}]
    assert out["nested"] == {"deeper": {"db": {"password": MASK}}}
    assert out["login"] == {"user": "ann", "password": MASK}
    assert out["pair"] == {"token": MASK, "scope": "read"}
    assert sorted(out["tags"]) == ["a", "b"]
    assert value["nested"]["deeper"]["db"]["password"] == {"any": ["type"]}, "input untouched"


def test_a_top_level_extra_named_like_a_secret_is_masked_whatever_its_type() -> None:
    out = encoded(JsonFormatter(), password=None, api_key={"k": 1}, token=12345)
    assert (out["password"], out["api_key"], out["token"]) == (MASK, MASK, MASK)


def test_keys_seen_before_are_masked_or_kept_the_same_way_again() -> None:
    # The formatter passes a plain value under a key it already knows to be harmless straight
    # through; a key known to be a secret, or a container under a harmless key, still goes
    # through the redactor on every record.
    formatter = JsonFormatter()
    for _ in range(3):
        out = encoded(formatter, user="bob", password="hunter2", amount=1.5,
                      data={"token": "t", "n": 1})
        assert (out["user"], out["password"], out["amount"]) == ("bob", MASK, 1.5)
        assert out["data"] == {"token": MASK, "n": 1}


def test_unchanged_values_are_passed_through_as_the_same_object() -> None:
    redactor = Redactor(DEFAULT_REDACT_KEYS)
    value = {"a": [1, {"b": (2, 3)}], "c": {"d"}}
    assert redactor.field("data", value) is value


def test_a_cycle_cannot_smuggle_the_original_back_in() -> None:
    value: dict[str, Any] = {"password": MARKER}
    value["self"] = value
    raw = JsonFormatter().encode(record(data=value))
    assert MARKER.encode() not in raw
    assert orjson.loads(raw)["data"]["password"] == MASK


def test_a_value_that_cannot_be_walked_is_replaced_not_written_unchecked() -> None:
    class Broken(collections.abc.Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            return MARKER

        def __iter__(self) -> Any:
            raise RuntimeError("boom")

        def __len__(self) -> int:
            return 1

    raw = JsonFormatter().encode(record(data=Broken()))
    assert MARKER.encode() not in raw
    assert "could not be checked" in orjson.loads(raw)["data"]


def test_nesting_deeper_than_the_walk_is_replaced() -> None:
    value: Any = {"password": MARKER}
    for _ in range(400):
        value = [value]
    raw = JsonFormatter().encode(record(data=value))
    assert MARKER.encode() not in raw


def test_static_fields_are_masked_once_when_the_formatter_is_built() -> None:
    out = encoded(JsonFormatter(static_fields={"service": "billing", "api_token": MARKER}))
    assert out["service"] == "billing"
    assert out["api_token"] == MASK
    ecs = encoded(JsonFormatter("ecs", static_fields={"service": {"name": "b", "secret": 1}}))
    assert ecs["service"] == {"name": "b", "secret": MASK}


def test_message_text_and_arguments_are_not_searched() -> None:
    # Documented: args are formatted into the message, which is written as it is.
    out = encoded(JsonFormatter())
    assert out["message"] == "hello world"


def test_turned_off_writes_extras_unchanged() -> None:
    for off in (None, (), []):
        out = encoded(JsonFormatter(redact_keys=off), password="p", data={"token": "t"})
        assert (out["password"], out["data"]) == ("p", {"token": "t"})


# -- properties ---------------------------------------------------------------------------------

ordinary_text = st.text(ORDINARY_ALPHABET, max_size=8)
ordinary_keys = st.text(ORDINARY_ALPHABET, min_size=1, max_size=10)
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), ordinary_text,
    st.floats(allow_nan=False, allow_infinity=False),
)


def trees(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(ordinary_keys, children, max_size=4),
        ),
        max_leaves=20,
    )


secret_leaf = st.integers(0, 10**6).map(lambda n: f"{MARKER}{n}")


@st.composite
def trees_with_secrets(draw: st.DrawFn) -> Any:
    """Ordinary trees in which some dicts carry a sensitive key; the secret marker appears only
    somewhere under such a key (possibly deep inside an ordinary-looking subtree)."""
    tree = draw(trees(leaves))
    under_secret = trees(st.one_of(leaves, secret_leaf)) | secret_leaf
    sensitive = st.dictionaries(st.sampled_from(SENSITIVE_KEYS), under_secret, min_size=1,
                                max_size=3)

    def plant(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: plant(v) for k, v in node.items()}
            out.update(draw(sensitive))
            return out
        if isinstance(node, (list, tuple)):
            return [plant(v) for v in node] + [draw(sensitive)]
        return node

    return plant(tree) if isinstance(tree, (dict, list, tuple)) else [tree, draw(sensitive)]


@settings(max_examples=150, deadline=None)
@given(data=trees_with_secrets(), top=secret_leaf)
def test_no_value_under_a_matching_key_survives_anywhere_in_the_output(data: Any, top: str) -> None:
    raw = JsonFormatter().encode(record(payload=data, session_token=top))
    assert MARKER.encode() not in raw
    assert orjson.loads(raw)["session_token"] == MASK


@settings(max_examples=150, deadline=None)
@given(data=trees(leaves))
def test_data_without_matching_keys_is_written_exactly_as_without_redaction(data: Any) -> None:
    on = JsonFormatter().to_dict(record(payload=data))["payload"]
    off = JsonFormatter(redact_keys=None).to_dict(record(payload=data))["payload"]
    assert on is data
    assert off is data


@settings(max_examples=100, deadline=None)
@given(data=trees_with_secrets())
def test_turned_off_everything_is_written_as_given(data: Any) -> None:
    on = encoded(JsonFormatter(redact_keys=None), payload=data)["payload"]
    assert on == orjson.loads(orjson.dumps(data))


# -- the handler option -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("password, ssn ,", ("password", "ssn")),
        (["Authorization", "authorization"], ("Authorization", "authorization")),
        (("token", "token"), ("token",)),
        (None, ()),
        ("", ()),
        ("off", ()),
        ("None", ()),
        ([], ()),
    ],
)
def test_redact_keys_option_accepts_lists_and_comma_separated_strings(
    given_value: object, expected: tuple[str, ...]
) -> None:
    config = HandlerConfig.from_options({"topic": "t", "redact_keys": given_value})
    assert config.redact_keys == expected


def test_redact_keys_defaults_to_the_documented_list() -> None:
    assert HandlerConfig.from_options({"topic": "t"}).redact_keys == (
        "password", "passwd", "secret", "token", "api_key", "authorization", "cookie",
        "set-cookie",
    )


@pytest.mark.parametrize("bad", [42, ["password", 3], "password, --", {"a": 1}])
def test_bad_redact_keys_are_a_config_error_naming_the_option(bad: object) -> None:
    with pytest.raises(ConfigError, match="redact_keys") as raised:
        HandlerConfig.from_options({"topic": "t", "redact_keys": bad})
    assert raised.value.option == "redact_keys"


def test_the_handler_masks_with_its_configured_keys(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = KafkaHandler(topic="t", spill_dir=None, linger_ms=0, redact_keys="ssn",
                           transport_factory=MemoryTransport.factory(transport))
    logger.addHandler(handler)
    logger.info("signup", extra={"user": {"ssn": "123-45-6789", "password": "kept"}})
    assert handler.flush(30.0)
    handler.close()
    (message,) = transport.messages()
    assert message["user"] == {"ssn": MASK, "password": "kept"}


def test_bound_context_fields_are_masked_like_extras() -> None:
    with bound(session={"user": "ann", "cookie": MARKER}, auth_token=MARKER):
        raw = JsonFormatter().encode(record(token=MARKER))
    assert MARKER.encode() not in raw
    out = orjson.loads(raw)
    assert out["session"] == {"user": "ann", "cookie": MASK}
    assert out["auth_token"] == MASK
    assert out["token"] == MASK
