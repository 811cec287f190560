"""Property-based fuzzing of the hub's parsers: frames, tokens and configuration.

Every input gets a defined answer: a frame is a request, a :class:`FrameError` (close
1007) or a :class:`RequestError` (``r = 21``); a token is claims or a :class:`TokenError`
with an AUTHEN code; a configuration is a :class:`Config` or a one-line
:class:`ConfigError`. Nothing else ever escapes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from monitor.config import (
    Config,
    ConfigError,
    HubSettings,
    apply_overrides,
    load_config,
    parse_config,
)
from monitor.hub.state import HubState
from monitor.protocol import (
    ALL_CALL_STATUS,
    BUILTIN_ATTRIBUTES,
    CALL,
    MAX_ATTRIBUTE_GRANTS,
    MAX_TOKEN_BYTES,
    MAX_TOPICS,
    FrameError,
    RequestError,
    Result,
    decode,
    is_attribute_name,
    is_topic_name,
)
from monitor.tokens import (
    ClientClaims,
    RestClaims,
    TokenError,
    verify_client_token,
    verify_rest_token,
)

SID = "SKFUZZ0000000001"
SECRET = "fuzz-secret-0123456789-abcdefghijklmnop"
AUTHEN_CODES = {int(r) for r in (Result.TOKEN_MISSING, Result.TOKEN_UNDECODABLE,
                                 Result.TOKEN_FORMAT, Result.TOKEN_ALGORITHM,
                                 Result.KEY_NOT_FOUND, Result.TOKEN_EXPIRED,
                                 Result.TOKEN_PAYLOAD, Result.AUTH_OTHER,
                                 Result.TOKEN_SIGNATURE)}
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def secret_for(sid: str) -> str | None:
    return SECRET if sid == SID else None


# -- JSON values, including what Python's json accepts beyond the standard -------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=5),
    max_leaves=25)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_raw(header_json: str, payload_json: str, secret: str = SECRET) -> str:
    """A token whose parts are exactly this text, correctly signed."""
    signing_input = b64(header_json.encode("utf-8", "surrogatepass")) + "." + \
        b64(payload_json.encode("utf-8", "surrogatepass"))
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


HEADER = json.dumps({"typ": "JWT", "alg": "HS256"})


# -- frames --------------------------------------------------------------------------------


def _decode_is_defined(data: str | bytes) -> None:
    try:
        service, body = decode(data)
    except (FrameError, RequestError):
        return
    assert isinstance(service, int) and not isinstance(service, bool)
    assert isinstance(body, dict)


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300))
@example('{"service": 1, "body": ' + "[" * 100_000 + "]" * 100_000 + "}")
@example(b'{"service": 103, "body": {"value": "\xff\xfe"}}')
@example('{"service": 103, "body": {"value": "\\ud800"}}')
@example('{"service": 1e999, "body": {}}')
@example('{"service": NaN, "body": {}}')
@example('{"service": 103, "service": 104}')
def test_decode_any_text_or_bytes(data: str | bytes) -> None:
    _decode_is_defined(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(["service", "body", "requestId", "x"]) | st.text(),
                       json_values, max_size=4))
def test_decode_any_json_object(obj: dict[str, Any]) -> None:
    text = json.dumps(obj)  # NaN and Infinity as Python writes them
    try:
        service, body = decode(text)
    except RequestError:
        service_ok = isinstance(obj.get("service"), int) and \
            not isinstance(obj.get("service"), bool)
        body_ok = obj.get("body") is None or isinstance(obj.get("body"), dict)
        assert not (service_ok and body_ok), obj
        return
    assert service == obj["service"]
    assert body == (obj.get("body") or {})


@FUZZ
@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_decode_anything_but_an_object_is_a_frame_error(value: object) -> None:
    with pytest.raises(FrameError):
        decode(json.dumps(value))


# -- tokens --------------------------------------------------------------------------------


def _claims_are_sound(claims: ClientClaims) -> None:
    assert claims.key_sid == SID
    assert isinstance(claims.user_id, str) and 1 <= len(claims.user_id) <= 128
    assert claims.user_id == claims.user_id.strip()
    assert len(claims.grants.subscribe) <= MAX_TOPICS
    assert len(claims.grants.attributes) <= MAX_ATTRIBUTE_GRANTS
    assert all(is_topic_name(t) for t in claims.grants.subscribe)
    for grant in claims.grants.attributes:
        assert is_attribute_name(grant.attribute) and is_topic_name(grant.topic)
        # Only the hub publishes to ALL_CALL_STATUS.
        assert grant.topic != ALL_CALL_STATUS
    assert claims.display_name is None or (isinstance(claims.display_name, str)
                                           and 0 < len(claims.display_name) <= 128)
    json.dumps(claims.grants.to_json())  # what the AUTHEN reply and the store write


def _verify(token: object) -> ClientClaims | None:
    try:
        claims = verify_client_token(token, secret_for)
    except TokenError as exc:
        assert int(exc.code) in AUTHEN_CODES, exc.code
        assert isinstance(exc.message, str) and exc.message
        return None
    _claims_are_sound(claims)
    return claims


def _verify_rest(token: object) -> RestClaims | None:
    try:
        return verify_rest_token(token, secret_for)
    except TokenError as exc:
        assert int(exc.code) in AUTHEN_CODES, exc.code
        return None


token_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.=+/ ", max_size=200)


@FUZZ
@given(st.one_of(st.none(), st.integers(), st.text(max_size=300), token_text, json_values))
@example("a.b.c")
@example("..")
@example("\ud800.\udfff.x")
@example("é" * 5000)
@example("a" * (MAX_TOKEN_BYTES + 1))
def test_any_token_text_gets_an_authen_code(token: object) -> None:
    assert _verify(token) is None
    assert _verify_rest(token) is None


@FUZZ
@given(header=st.dictionaries(st.sampled_from(["alg", "typ", "cty", "kid", "crit", "jku"])
                              | st.text(max_size=5), json_values, max_size=4),
       payload=json_values)
def test_any_json_parts_signed_with_the_right_key(header: dict[str, Any],
                                                  payload: object) -> None:
    token = signed_raw(json.dumps(header), json.dumps(payload))
    claims = _verify(token)
    if claims is not None:
        assert header.get("alg") == "HS256"
    _verify_rest(token)


claim_values = st.one_of(json_values, st.text(max_size=130),
                         st.text(alphabet=string.ascii_letters + ",. _:-", max_size=60))
grant_items = st.one_of(
    st.fixed_dictionaries({"attribute": st.sampled_from(["call", "onlineStatus", "note",
                                                         "a b", "", "x" * 65]) | claim_values,
                           "topic": st.sampled_from(["t", ALL_CALL_STATUS, "a,b", "x" * 129,
                                                     "ＡＬＬ"]) | claim_values}),
    json_values)


@FUZZ
@given(user_id=st.one_of(st.text(max_size=140), json_values),
       subscribe=st.one_of(st.none(), claim_values, st.lists(claim_values, max_size=5),
                           st.lists(st.sampled_from(["a", "b", ALL_CALL_STATUS]), max_size=120)
                           .map(",".join)),
       attributes=st.one_of(st.none(), st.lists(grant_items, max_size=5),
                            st.lists(grant_items, max_size=5).map(json.dumps), claim_values),
       display_name=st.one_of(st.none(), json_values, st.text(max_size=200)),
       exp=st.one_of(st.integers(min_value=-2**70, max_value=2**70),
                     st.just(int(time.time()) + 3600), json_values))
@example(user_id="u", subscribe=None, attributes=None, display_name=None, exp=float("inf"))
@example(user_id="u", subscribe=None, attributes=None, display_name=None, exp=10**400)
@example(user_id="u", subscribe=None, attributes="[" * 5000 + "]" * 5000, display_name=None,
         exp=int(time.time()) + 3600)
@example(user_id="\u202eadmin", subscribe=None, attributes=None, display_name="\u202e",
         exp=int(time.time()) + 3600)
def test_any_client_payload_signed_with_the_right_key(user_id: object, subscribe: object,
                                                      attributes: object, display_name: object,
                                                      exp: object) -> None:
    payload: dict[str, Any] = {"iss": SID, "jti": f"{SID}-1", "userId": user_id, "exp": exp}
    for name, value in (("subscribe", subscribe), ("attributes", attributes),
                        ("displayName", display_name)):
        if value is not None:
            payload[name] = value
    text = json.dumps(payload)
    if len(text) > MAX_TOKEN_BYTES:
        text = json.dumps({**payload, "attributes": None})
    claims = _verify(signed_raw(HEADER, text))
    if claims is not None:
        # A sound token is accepted whatever its grants: the hub can then register it.
        state = HubState([1])
        outcome = state.authenticate(object(), 1, claims, {}, 1, 0)
        assert outcome.session.user.user_id == claims.user_id
        for grant in claims.grants.attributes:
            assert grant.attribute not in BUILTIN_ATTRIBUTES or grant.topic != ALL_CALL_STATUS
        assert all(g.attribute != CALL or g.topic != ALL_CALL_STATUS
                   for g in claims.grants.attributes)


@FUZZ
@given(st.text(max_size=80), st.binary(min_size=0, max_size=40))
def test_tampering_with_any_part_is_refused(replacement: str, noise: bytes) -> None:
    good = signed_raw(HEADER, json.dumps({"iss": SID, "userId": "agent", "exp":
                                          int(time.time()) + 3600}))
    head, payload, signature = good.split(".")
    for token in (f"{head}.{b64(noise)}.{signature}", f"{head}.{payload}.{b64(noise)}",
                  f"{b64(replacement.encode('utf-8', 'surrogatepass'))}.{payload}.{signature}",
                  f"{head}.{payload}.{signature}{replacement}"):
        if token == good:
            continue
        claims = _verify(token)
        assert claims is None or claims.user_id == "agent", token


# -- configuration ----------------------------------------------------------------------------

toml_scalars = (st.booleans() | st.integers(min_value=-2**64, max_value=2**64)
                | st.floats(allow_nan=True) | st.text(max_size=30))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=10)
setting_names = st.sampled_from([f.name for f in HubSettings.__dataclass_fields__.values()])
settings_tables = st.dictionaries(setting_names | st.text(max_size=10),
                                  toml_values | st.text(string.digits + " -_", max_size=30),
                                  max_size=5)
key_tables = st.fixed_dictionaries({"sid": toml_values | st.text(max_size=10),
                                    "secret": toml_values | st.text(min_size=10, max_size=20)})
project_tables = st.dictionaries(st.sampled_from(["id", "name", "keys", "other"]),
                                 toml_values | st.lists(key_tables, max_size=2), max_size=3)
documents = st.dictionaries(st.sampled_from(["hub", "projects", "other"]),
                            settings_tables | st.lists(project_tables, max_size=3)
                            | toml_values, max_size=3)


def _config_is_usable(config: Config) -> None:
    """A configuration that parsed can run a hub: every number fits what uses it."""
    settings_ = config.hub
    HubState([p.id for p in config.projects], history_size=settings_.history_size,
             offline_grace_ms=settings_.offline_grace_ms,
             ping_after_ms=settings_.ping_after_ms).topic(0, "t")
    for name in ("offline_grace_ms", "ping_after_ms", "ping_timeout_extra_ms",
                 "auth_timeout_ms", "call_no_answer_ms"):
        seconds = getattr(settings_, name) / 1000
        assert seconds < 10**9, (name, seconds)  # an event-loop timer can be armed


@FUZZ
@given(documents)
@example({"hub": {"history_size": 2**64}})
@example({"hub": {"offline_grace_ms": 10**18}})
@example({"hub": {"ws_port": 70000}})
@example({"hub": {"a\nb": 1}})  # found on a fresh machine: a two-line message
@example({"hub\r": {}})
@example({"projects": [{"id": 1, "x\ny": 1}]})
@example({"projects": [{"id": 1, "keys": [{"sid": "s", "secret": "x" * 16, "\n": 1}]}]})
@example({"projects": [{"id": 1, "keys": [{"sid": "s", "secret": "x" * 16},
                                          {"sid": "s", "secret": "y" * 16}]}]})
def test_any_config_document(data: dict[str, Any]) -> None:
    try:
        config = parse_config(data, "fuzz.toml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml") and "\n" not in message, message
        return
    _config_is_usable(config)


@FUZZ
@given(st.dictionaries(setting_names, st.text(max_size=25), max_size=4))
@example({"history_size": "9" * 5000})
@example({"history_size": "99999999999999999999"})
@example({"ws_port": " 7000 "})
@example({"log_level": "DEBUG"})
def test_any_environment_override(values: dict[str, str]) -> None:
    try:
        settings_ = apply_overrides(HubSettings(), values, "environment")
    except ConfigError as exc:
        assert str(exc).startswith("environment") and "\n" not in str(exc)
        return
    _config_is_usable(Config(settings_))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200) | st.sampled_from(["a = " + "[" * 5000, "[hub]\nws_port = 1e3",
                                                "[hub]\n[hub]", "x = \x00"]))
def test_any_config_file_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(str(path), environ={})
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)
        assert str(exc).startswith(str(path))
    else:
        # Only what is TOML is accepted (as read: text mode turns a lone CR into a newline).
        tomllib.loads(path.read_text(encoding="utf-8"))
