"""Access tokens: minting exactly as the spec shows, and every rejection path of verifying."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from monitor.protocol import (
    ALL_CALL_STATUS,
    MAX_ATTRIBUTE_GRANTS,
    MAX_TOKEN_BYTES,
    MAX_TOPICS,
    MAX_USER_ID_CHARS,
    Result,
)
from monitor.tokens import (
    HEADER,
    AttributeGrant,
    ClientClaims,
    Grants,
    RestClaims,
    TokenError,
    decode_unverified,
    mint_client_token,
    mint_rest_token,
    parse_attributes,
    parse_subscribe,
    verify_client_token,
    verify_rest_token,
)

SID = "SKTEST0001"
SECRET = "test-secret-" + "0123456789abcdef" * 4
OTHER_SID = "SKTEST0002"
OTHER_SECRET = "another-secret-" + "fedcba9876543210" * 4
KEYS = {SID: SECRET, OTHER_SID: OTHER_SECRET}
SPEC_HEADER = {"typ": "JWT", "alg": "HS256", "cty": "stringee-api;v=1"}


def lookup(sid: str) -> str | None:
    return KEYS.get(sid)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def sign(signing_input: str, secret: str = SECRET, digest: Any = hashlib.sha256) -> str:
    return b64(hmac.new(secret.encode(), signing_input.encode(), digest).digest())


def forge(payload: Any, header: Any = None, secret: str = SECRET, *,
          raw_header: str | None = None, raw_payload: str | None = None,
          digest: Any = hashlib.sha256) -> str:
    """A correctly HMAC-signed token with any header and payload, even nonsensical ones."""
    h = raw_header if raw_header is not None else b64json(
        SPEC_HEADER if header is None else header)
    p = raw_payload if raw_payload is not None else b64json(payload)
    return f"{h}.{p}.{sign(f'{h}.{p}', secret, digest)}"


def claims(**extra: Any) -> dict[str, Any]:
    """A valid client payload, with ``extra`` claims replaced (``None`` removes one)."""
    now = int(time.time())
    payload: dict[str, Any] = {"jti": f"{SID}-{now}", "iss": SID, "exp": now + 3600,
                               "userId": "alice"}
    for key, value in extra.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def refused(token: object, code: Result, *, rest: bool = False) -> TokenError:
    verify = verify_rest_token if rest else verify_client_token
    with pytest.raises(TokenError) as info:
        verify(token, lookup)
    assert info.value.code == code, info.value.message
    assert isinstance(info.value.code, Result)
    assert info.value.message and "\n" not in info.value.message
    return info.value


# -- minting ---------------------------------------------------------------------------


class TestMint:
    def test_client_token_header_is_the_spec_header(self) -> None:
        token = mint_client_token(SID, SECRET, "alice")
        assert json.loads(unb64(token.split(".")[0])) == SPEC_HEADER
        assert jwt.get_unverified_header(token) == SPEC_HEADER
        assert HEADER == SPEC_HEADER

    def test_client_token_payload_is_exactly_the_spec_payload(self) -> None:
        token = mint_client_token(SID, SECRET, "alice", subscribe=["team1", "ALL_CALL_STATUS"],
                                  attributes=[AttributeGrant("status", "team1"),
                                              ("onlineStatus", "team1")],
                                  ttl_s=600, now=1_700_000_000.9)
        payload = json.loads(unb64(token.split(".")[1]))
        assert payload == {
            "jti": f"{SID}-1700000000",
            "iss": SID,
            "exp": 1_700_000_600,
            "userId": "alice",
            "subscribe": "team1,ALL_CALL_STATUS",
            "attributes": [{"attribute": "status", "topic": "team1"},
                           {"attribute": "onlineStatus", "topic": "team1"}],
        }
        assert isinstance(payload["exp"], int)
        assert isinstance(payload["subscribe"], str)
        assert isinstance(payload["attributes"], list)

    def test_client_token_without_grants_has_no_grant_claims(self) -> None:
        token = mint_client_token(SID, SECRET, "bob", now=1_700_000_000)
        payload = json.loads(unb64(token.split(".")[1]))
        assert payload == {"jti": f"{SID}-1700000000", "iss": SID, "exp": 1_700_003_600,
                           "userId": "bob"}

    def test_display_name_is_a_claim_when_given(self) -> None:
        token = mint_client_token(SID, SECRET, "bob", display_name="Bob B.", now=1_700_000_000)
        assert json.loads(unb64(token.split(".")[1]))["displayName"] == "Bob B."

    def test_jti_uses_the_current_time_by_default(self) -> None:
        before = int(time.time())
        payload = json.loads(unb64(mint_client_token(SID, SECRET, "u").split(".")[1]))
        after = int(time.time())
        sid, _, secs = payload["jti"].rpartition("-")
        assert sid == SID
        assert before <= int(secs) <= after
        assert payload["exp"] == int(secs) + 3600

    def test_client_token_verifies_with_plain_pyjwt(self) -> None:
        token = mint_client_token(SID, SECRET, "alice", subscribe=["t1"],
                                  attributes=[("status", "t1")])
        payload = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert payload["userId"] == "alice"
        assert payload["iss"] == SID
        assert payload["subscribe"] == "t1"
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, OTHER_SECRET, algorithms=["HS256"])

    def test_signature_is_hmac_sha256_of_the_first_two_parts(self) -> None:
        token = mint_client_token(SID, SECRET, "alice")
        head, payload, signature = token.split(".")
        assert signature == sign(f"{head}.{payload}")

    def test_rest_token_is_exactly_the_spec_payload(self) -> None:
        token = mint_rest_token(SID, SECRET, ttl_s=60, now=1_700_000_000)
        head, payload, _ = token.split(".")
        assert json.loads(unb64(head)) == SPEC_HEADER
        assert json.loads(unb64(payload)) == {"jti": f"{SID}-1700000000", "iss": SID,
                                              "exp": 1_700_000_060, "rest_api": True}

    def test_rest_token_verifies_with_plain_pyjwt(self) -> None:
        payload = jwt.decode(mint_rest_token(SID, SECRET), SECRET, algorithms=["HS256"])
        assert payload["rest_api"] is True
        assert "userId" not in payload


# -- round trips -------------------------------------------------------------------------


class TestRoundTrip:
    def test_client_token_round_trip(self) -> None:
        token = mint_client_token(SID, SECRET, "alice", subscribe=["t1", "t2"],
                                  attributes=[("status", "t1"), ("onlineStatus", "t2")],
                                  display_name="Alice", ttl_s=120, now=time.time())
        result = verify_client_token(token, lookup)
        assert isinstance(result, ClientClaims)
        assert result.key_sid == SID
        assert result.user_id == "alice"
        assert abs(result.expires_at - (time.time() + 120)) <= 2
        assert result.display_name == "Alice"
        assert result.grants == Grants(("t1", "t2"), (AttributeGrant("status", "t1"),
                                                      AttributeGrant("onlineStatus", "t2")))

    def test_second_key_selects_its_own_secret(self) -> None:
        token = mint_client_token(OTHER_SID, OTHER_SECRET, "carol")
        assert verify_client_token(token, lookup).key_sid == OTHER_SID

    def test_lookup_is_asked_for_the_iss(self) -> None:
        asked: list[str] = []

        def recording(sid: str) -> str | None:
            asked.append(sid)
            return KEYS.get(sid)

        verify_client_token(mint_client_token(OTHER_SID, OTHER_SECRET, "carol"), recording)
        assert asked == [OTHER_SID]

    def test_rest_token_round_trip(self) -> None:
        token = mint_rest_token(SID, SECRET, ttl_s=300)
        result = verify_rest_token(token, lookup)
        assert isinstance(result, RestClaims)
        assert result.key_sid == SID
        assert abs(result.expires_at - (time.time() + 300)) <= 2

    def test_grants_empty_without_claims(self) -> None:
        result = verify_client_token(mint_client_token(SID, SECRET, "u"), lookup)
        assert result.grants == Grants()
        assert result.display_name is None

    def test_cty_and_typ_optional_on_input(self) -> None:
        assert verify_client_token(forge(claims(), {"alg": "HS256", "typ": "JWT"}),
                                   lookup).user_id == "alice"
        assert verify_client_token(forge(claims(), {"alg": "HS256"}), lookup).user_id == "alice"

    def test_other_claims_are_ignored(self) -> None:
        token = forge(claims(icc_api=True, avatarUrl="https://x/y.png", rest_api=False,
                             nested={"a": [1, 2, {"b": None}]}))
        assert verify_client_token(token, lookup).user_id == "alice"

    def test_user_id_of_exactly_max_chars(self) -> None:
        user = "u" * MAX_USER_ID_CHARS
        assert verify_client_token(forge(claims(userId=user)), lookup).user_id == user

    def test_unicode_user_id(self) -> None:
        assert verify_client_token(forge(claims(userId="Nguyễn Văn A")),
                                   lookup).user_id == "Nguyễn Văn A"

    def test_exactly_max_topics_and_grants(self) -> None:
        topics = [f"t{i}" for i in range(MAX_TOPICS)]
        grants = [{"attribute": f"a{i}", "topic": "t0"} for i in range(MAX_ATTRIBUTE_GRANTS)]
        result = verify_client_token(forge(claims(subscribe=",".join(topics),
                                                  attributes=grants)), lookup)
        assert result.grants.subscribe == tuple(topics)
        assert len(result.grants.attributes) == MAX_ATTRIBUTE_GRANTS


# -- both encodings of the grant claims --------------------------------------------------


class TestEncodings:
    def test_subscribe_comma_string_and_list_agree(self) -> None:
        as_string = verify_client_token(forge(claims(subscribe="t1,t2,t3")), lookup)
        as_list = verify_client_token(forge(claims(subscribe=["t1", "t2", "t3"])), lookup)
        assert as_string.grants.subscribe == as_list.grants.subscribe == ("t1", "t2", "t3")

    def test_subscribe_blanks_and_duplicates(self) -> None:
        assert parse_subscribe(" a , b,,a ,") == ("a", "b")
        assert parse_subscribe(["a", " b ", "", "a"]) == ("a", "b")
        assert parse_subscribe("") == ()
        assert parse_subscribe([]) == ()
        assert parse_subscribe(None) == ()

    def test_topic_charset(self) -> None:
        assert parse_subscribe("A-z_0.9:x") == ("A-z_0.9:x",)
        assert parse_subscribe("x" * 128) == ("x" * 128,)

    def test_attributes_array_and_json_string_agree(self) -> None:
        grants = [{"attribute": "status", "topic": "t1"}, {"attribute": "note", "topic": "t2"}]
        as_array = verify_client_token(forge(claims(attributes=grants)), lookup)
        as_string = verify_client_token(forge(claims(attributes=json.dumps(grants))), lookup)
        expected = (AttributeGrant("status", "t1"), AttributeGrant("note", "t2"))
        assert as_array.grants.attributes == as_string.grants.attributes == expected

    def test_attributes_empty_forms(self) -> None:
        assert parse_attributes(None) == ()
        assert parse_attributes([]) == ()
        assert parse_attributes("") == ()
        assert parse_attributes("  ") == ()
        assert parse_attributes("[]") == ()

    def test_duplicate_grants_collapse_and_extra_keys_ignored(self) -> None:
        raw = [{"attribute": "s", "topic": "t"}, {"attribute": "s", "topic": "t", "x": 1}]
        assert parse_attributes(raw) == (AttributeGrant("s", "t"),)

    def test_call_to_all_call_status_is_accepted_and_dropped(self) -> None:
        raw = [{"attribute": "call", "topic": ALL_CALL_STATUS},
               {"attribute": "call", "topic": "team"}]
        assert parse_attributes(raw) == (AttributeGrant("call", "team"),)
        token = forge(claims(attributes=raw, subscribe=ALL_CALL_STATUS))
        result = verify_client_token(token, lookup)
        assert result.grants.attributes == (AttributeGrant("call", "team"),)
        assert result.grants.may_receive(ALL_CALL_STATUS)

    def test_grants_helpers(self) -> None:
        grants = Grants(("t1", "t2"), (AttributeGrant("status", "t1"),
                                       AttributeGrant("status", "t2"),
                                       AttributeGrant("note", "t1")))
        assert grants.topics_for("status") == ("t1", "t2")
        assert grants.topics_for("note") == ("t1",)
        assert grants.topics_for("other") == ()
        assert grants.may_receive("t2")
        assert not grants.may_receive("t3")
        assert grants.to_json() == {
            "subscribe": ["t1", "t2"],
            "attributes": [{"attribute": "status", "topic": "t1"},
                           {"attribute": "status", "topic": "t2"},
                           {"attribute": "note", "topic": "t1"}]}
        assert Grants.from_json(grants.to_json()) == grants
        assert Grants.from_json({}) == Grants()

    def test_display_name_handling(self) -> None:
        def name(value: Any) -> str | None:
            return verify_client_token(forge(claims(displayName=value)), lookup).display_name

        assert name("Alice A.") == "Alice A."
        assert name("x" * 500) == "x" * 128
        assert name(42) is None
        # Control and format characters are refused (r = 7), not silently dropped: the
        # name is shown in every supervisor's terminal.
        for hostile in ("bad\nname", "zero\u200bwidth", "esc\x1b]0;title\x07",
                        "c1\x9bJ", "line\u2028sep", "rtl\u202eoverride"):
            with pytest.raises(TokenError) as caught:
                name(hostile)
            assert caught.value.code == Result.TOKEN_PAYLOAD, hostile
        assert name("") is None

    def test_decode_unverified_shows_header_and_payload(self) -> None:
        token = mint_client_token(SID, "not-the-configured-secret" * 3, "alice", now=1_700_000_000)
        header, payload = decode_unverified(token)
        assert header == SPEC_HEADER
        assert payload["userId"] == "alice"
        assert payload["exp"] == 1_700_003_600  # expired long ago: not checked here


# -- rejections, by result code -----------------------------------------------------------


class TestMissing:  # r = 1
    @pytest.mark.parametrize("token", [None, "", "   ", "\n\t", 42, b"a.b.c", ["a.b.c"]])
    def test_missing_or_empty(self, token: object) -> None:
        refused(token, Result.TOKEN_MISSING)

    def test_missing_rest_token(self) -> None:
        refused("", Result.TOKEN_MISSING, rest=True)


class TestUndecodable:  # r = 2
    @pytest.mark.parametrize("token", [
        "abc", "a.b", "a.b.c.d", "....", "!!!.!!!.!!!", "a b.c d.e f",
        "ééé.ééé.ééé",
    ])
    def test_not_a_jwt(self, token: str) -> None:
        refused(token, Result.TOKEN_UNDECODABLE)

    def test_header_not_json(self) -> None:
        refused(forge(claims(), raw_header=b64(b"{not json")), Result.TOKEN_UNDECODABLE)

    def test_header_json_but_not_an_object(self) -> None:
        refused(forge(claims(), raw_header=b64json(["alg", "HS256"])), Result.TOKEN_UNDECODABLE)

    def test_header_not_base64(self) -> None:
        refused(forge(claims(), raw_header="A"), Result.TOKEN_UNDECODABLE)

    def test_payload_not_base64(self) -> None:
        refused(forge(None, raw_payload="A"), Result.TOKEN_UNDECODABLE)

    def test_payload_not_json(self) -> None:
        refused(forge(None, raw_payload=b64(b"{\"iss\": ")), Result.TOKEN_UNDECODABLE)

    def test_payload_not_utf8(self) -> None:
        refused(forge(None, raw_payload=b64(b"\xff\xfe{}")), Result.TOKEN_UNDECODABLE)

    def test_signature_not_base64(self) -> None:
        head, payload, _ = forge(claims()).split(".")
        refused(f"{head}.{payload}.A", Result.TOKEN_UNDECODABLE)

    @pytest.mark.parametrize("depth", [1200, 2500])
    def test_deeply_nested_payload(self, depth: int) -> None:
        deep = "[" * depth + "]" * depth
        raw = b64(('{"iss":"' + SID + '","exp":9999999999,"userId":"u","x":' + deep + "}").encode())
        refused(forge(None, raw_payload=raw), Result.TOKEN_UNDECODABLE)
        refused(forge(None, raw_payload=b64(deep.encode())), Result.TOKEN_UNDECODABLE)

    def test_deeply_nested_header(self) -> None:
        deep = "[" * 1500 + "]" * 1500
        refused(forge(claims(), raw_header=b64(deep.encode())), Result.TOKEN_UNDECODABLE)


class TestFormat:  # r = 3
    @pytest.mark.parametrize("payload", [[1, 2], "a string", 42, None, True])
    def test_payload_not_an_object(self, payload: Any) -> None:
        refused(forge(payload), Result.TOKEN_FORMAT)

    @pytest.mark.parametrize("iss", [None, "", 42, ["SKTEST0001"], {"sid": SID}])
    def test_no_usable_iss(self, iss: Any) -> None:
        payload = claims()
        if iss is None:
            del payload["iss"]
        else:
            payload["iss"] = iss
        refused(forge(payload), Result.TOKEN_FORMAT)

    def test_rest_payload_not_an_object(self) -> None:
        refused(forge([1]), Result.TOKEN_FORMAT, rest=True)


class TestAlgorithm:  # r = 4
    def test_alg_none_unsigned(self) -> None:
        head = b64json({"typ": "JWT", "alg": "none"})
        refused(f"{head}.{b64json(claims())}.", Result.TOKEN_ALGORITHM)

    def test_alg_none_made_by_pyjwt(self) -> None:
        token = jwt.encode(claims(), None, algorithm="none")
        refused(token, Result.TOKEN_ALGORITHM)
        refused(jwt.encode(claims(rest_api=True), None, algorithm="none"),
                Result.TOKEN_ALGORITHM, rest=True)

    def test_alg_none_with_a_valid_hs256_signature(self) -> None:
        refused(forge(claims(), {"typ": "JWT", "alg": "none"}), Result.TOKEN_ALGORITHM)

    def test_hs512_signed_with_the_right_secret(self) -> None:
        token = jwt.encode(claims(), SECRET, algorithm="HS512")
        refused(token, Result.TOKEN_ALGORITHM)
        refused(forge(claims(), {"typ": "JWT", "alg": "HS512"}, digest=hashlib.sha512),
                Result.TOKEN_ALGORITHM)

    def test_rs256_header_signed_hmac_with_the_secret(self) -> None:
        """Algorithm confusion: an RS256 header whose 'signature' is an HMAC of the secret."""
        refused(forge(claims(), {"typ": "JWT", "alg": "RS256"}), Result.TOKEN_ALGORITHM)
        refused(forge(claims(), {"typ": "JWT", "alg": "ES256"}), Result.TOKEN_ALGORITHM)

    @pytest.mark.parametrize("alg", ["hs256", "HS256 ", "HS 256", "", None, ["HS256"], 256])
    def test_alg_spelled_wrong_or_missing(self, alg: Any) -> None:
        header: dict[str, Any] = {"typ": "JWT"}
        if alg is not None:
            header["alg"] = alg
        refused(forge(claims(), header), Result.TOKEN_ALGORITHM)

    def test_algorithm_checked_before_the_key_is_looked_up(self) -> None:
        looked_up: list[str] = []

        def recording(sid: str) -> str | None:
            looked_up.append(sid)
            return KEYS.get(sid)

        with pytest.raises(TokenError) as info:
            verify_client_token(forge(claims(iss="SKUNKNOWN"), {"alg": "none"}), recording)
        assert info.value.code == Result.TOKEN_ALGORITHM
        assert looked_up == []

    def test_hs256_header_over_an_hs512_signature_is_a_bad_signature(self) -> None:
        refused(forge(claims(), digest=hashlib.sha512), Result.TOKEN_SIGNATURE)


class TestKeyNotFound:  # r = 5
    def test_unknown_sid(self) -> None:
        token = mint_client_token("SKNOPE", SECRET, "alice")
        error = refused(token, Result.KEY_NOT_FOUND)
        assert "SKNOPE" in error.message

    def test_unknown_sid_rest(self) -> None:
        refused(mint_rest_token("SKNOPE", SECRET), Result.KEY_NOT_FOUND, rest=True)

    def test_unknown_sid_wins_over_a_missing_exp(self) -> None:
        refused(forge(claims(iss="SKNOPE", exp=None)), Result.KEY_NOT_FOUND)


class TestExpired:  # r = 6
    def test_expired_long_ago(self) -> None:
        refused(mint_client_token(SID, SECRET, "alice", now=1_700_000_000), Result.TOKEN_EXPIRED)
        refused(mint_rest_token(SID, SECRET, now=1_700_000_000), Result.TOKEN_EXPIRED, rest=True)

    def test_expired_just_outside_the_leeway(self) -> None:
        refused(forge(claims(exp=int(time.time()) - 32)), Result.TOKEN_EXPIRED)
        refused(mint_client_token(SID, SECRET, "alice", ttl_s=-33), Result.TOKEN_EXPIRED)

    def test_expired_just_inside_the_leeway_is_accepted(self) -> None:
        exp = int(time.time()) - 27
        assert verify_client_token(forge(claims(exp=exp)), lookup).expires_at == exp
        assert verify_rest_token(forge({"iss": SID, "exp": exp, "rest_api": True}),
                                 lookup).expires_at == exp

    def test_expiring_soon_is_accepted(self) -> None:
        exp = int(time.time()) + 2
        assert verify_client_token(forge(claims(exp=exp)), lookup).expires_at == exp

    def test_expiry_checked_after_the_signature(self) -> None:
        refused(forge(claims(exp=1), secret=OTHER_SECRET), Result.TOKEN_SIGNATURE)


class TestPayload:  # r = 7
    @pytest.mark.parametrize("user_id", [
        None, "", "x" * (MAX_USER_ID_CHARS + 1), 42, ["alice"], {"id": "a"}, True,
        " alice", "alice ", "al\nice", "al\x00ice", "\u202ealice",
    ])
    def test_bad_user_id(self, user_id: Any) -> None:
        payload = claims()
        if user_id is None:
            del payload["userId"]
        else:
            payload["userId"] = user_id
        refused(forge(payload), Result.TOKEN_PAYLOAD)

    def test_user_id_lone_surrogate(self) -> None:
        raw = b64(('{"iss":"' + SID + '","exp":9999999999,"userId":"a\\ud800"}').encode())
        refused(forge(None, raw_payload=raw), Result.TOKEN_PAYLOAD)

    def test_rest_token_is_not_a_client_token(self) -> None:
        refused(mint_rest_token(SID, SECRET), Result.TOKEN_PAYLOAD)

    @pytest.mark.parametrize("subscribe", [
        42, True, {"t1": True}, ["t1", 2], [["t1"]], [None],
        "t1,bad topic", "t1,é", "x" * 129, ["t/1"], "t1;t2",
    ])
    def test_malformed_subscribe(self, subscribe: Any) -> None:
        refused(forge(claims(subscribe=subscribe)), Result.TOKEN_PAYLOAD)

    def test_too_many_topics(self) -> None:
        topics = [f"t{i}" for i in range(MAX_TOPICS + 1)]
        refused(forge(claims(subscribe=",".join(topics))), Result.TOKEN_PAYLOAD)
        refused(forge(claims(subscribe=topics)), Result.TOKEN_PAYLOAD)

    @pytest.mark.parametrize("attributes", [
        42, True, {"attribute": "s", "topic": "t"}, "not json", "[{\"attribute\": ",
        "{\"attribute\": \"s\", \"topic\": \"t\"}", "42", "[1]",
        ["s=t"], [None], [["s", "t"]],
        [{"topic": "t"}], [{"attribute": "s"}], [{}],
        [{"attribute": "bad name", "topic": "t"}],
        [{"attribute": "a" * 65, "topic": "t"}],
        [{"attribute": "a:b", "topic": "t"}],
        [{"attribute": "", "topic": "t"}],
        [{"attribute": 5, "topic": "t"}],
        [{"attribute": "s", "topic": "bad topic"}],
        [{"attribute": "s", "topic": "t" * 129}],
        [{"attribute": "s", "topic": ""}],
        [{"attribute": "s", "topic": ["t"]}],
    ])
    def test_malformed_attributes(self, attributes: Any) -> None:
        refused(forge(claims(attributes=attributes)), Result.TOKEN_PAYLOAD)
        if not isinstance(attributes, str):
            refused(forge(claims(attributes=json.dumps(attributes))), Result.TOKEN_PAYLOAD)

    def test_deeply_nested_attributes_string(self) -> None:
        refused(forge(claims(attributes="[" * 3000 + "]" * 3000)), Result.TOKEN_PAYLOAD)

    def test_too_many_attribute_grants(self) -> None:
        grants = [{"attribute": f"a{i}", "topic": "t"} for i in range(MAX_ATTRIBUTE_GRANTS + 1)]
        refused(forge(claims(attributes=grants)), Result.TOKEN_PAYLOAD)
        refused(forge(claims(attributes=json.dumps(grants))), Result.TOKEN_PAYLOAD)

    @pytest.mark.parametrize("attribute", ["status", "onlineStatus", "note"])
    def test_custom_attribute_to_all_call_status(self, attribute: str) -> None:
        grants = [{"attribute": attribute, "topic": ALL_CALL_STATUS}]
        error = refused(forge(claims(attributes=grants)), Result.TOKEN_PAYLOAD)
        assert ALL_CALL_STATUS in error.message

    def test_missing_exp(self) -> None:
        refused(forge(claims(exp=None)), Result.TOKEN_PAYLOAD)
        refused(forge({"iss": SID, "rest_api": True}), Result.TOKEN_PAYLOAD, rest=True)

    @pytest.mark.parametrize("exp", ["soon", [1], {"t": 1}, "1e3x"])
    def test_exp_not_a_number(self, exp: Any) -> None:
        refused(forge(claims(exp=exp)), Result.TOKEN_PAYLOAD)

    def test_token_over_8_kib(self) -> None:
        token = mint_client_token(SID, SECRET, "alice", display_name="x" * MAX_TOKEN_BYTES)
        assert len(token) > MAX_TOKEN_BYTES
        error = refused(token, Result.TOKEN_PAYLOAD)
        assert str(MAX_TOKEN_BYTES) in error.message
        refused(forge({"iss": SID, "exp": 9999999999, "rest_api": True,
                       "pad": "x" * MAX_TOKEN_BYTES}), Result.TOKEN_PAYLOAD, rest=True)

    def test_size_limit_boundary_is_8192_bytes(self) -> None:
        tokens = [forge(claims(pad="x" * n)) for n in range(5500, 6300)]
        fits = max((t for t in tokens if len(t) <= MAX_TOKEN_BYTES), key=len)
        over = min((t for t in tokens if len(t) > MAX_TOKEN_BYTES), key=len)
        assert len(fits) >= MAX_TOKEN_BYTES - 1
        assert len(over) <= MAX_TOKEN_BYTES + 2
        assert verify_client_token(fits, lookup).user_id == "alice"
        refused(over, Result.TOKEN_PAYLOAD)

    def test_size_counts_bytes_not_characters(self) -> None:
        # 3000 three-byte characters: under 8 KiB in characters, over it in UTF-8 bytes.
        token = "€" * 1500 + "." + "€" * 1500 + ".x"
        assert len(token) < MAX_TOKEN_BYTES < len(token.encode())
        refused(token, Result.TOKEN_PAYLOAD)

    def test_oversized_checked_before_decoding(self) -> None:
        refused("x" * (MAX_TOKEN_BYTES + 1), Result.TOKEN_PAYLOAD)

    @pytest.mark.parametrize("claim", ["nbf", "iat"])
    def test_not_valid_yet_beyond_the_leeway(self, claim: str) -> None:
        now = int(time.time())
        error = refused(forge(claims(**{claim: now + 3600})), Result.TOKEN_PAYLOAD)
        assert claim in error.message
        refused(forge({"iss": SID, "exp": now + 7200, "rest_api": True, claim: now + 3600}),
                Result.TOKEN_PAYLOAD, rest=True)
        refused(forge(claims(**{claim: "tomorrow"})), Result.TOKEN_PAYLOAD)
        # Within the leeway (a clock a little ahead) and in the past: accepted.
        for moment in (now + 20, now - 3600):
            assert verify_client_token(forge(claims(**{claim: moment})), lookup)

    def test_rest_token_with_a_user_id_does_not_log_in(self) -> None:
        error = refused(forge(claims(rest_api=True)), Result.TOKEN_PAYLOAD)
        assert "rest_api" in error.message


class TestAuthOther:  # r = 9
    def test_rest_verification_of_a_client_token(self) -> None:
        token = mint_client_token(SID, SECRET, "alice")
        error = refused(token, Result.AUTH_OTHER, rest=True)
        assert "rest_api" in error.message

    @pytest.mark.parametrize("flag", ["true", 1, "yes", False, None])
    def test_rest_api_must_be_json_true(self, flag: Any) -> None:
        payload: dict[str, Any] = {"iss": SID, "exp": int(time.time()) + 60}
        if flag is not None:
            payload["rest_api"] = flag
        refused(forge(payload), Result.AUTH_OTHER, rest=True)


class TestSignature:  # r = 10
    def test_wrong_secret(self) -> None:
        refused(mint_client_token(SID, OTHER_SECRET, "alice"), Result.TOKEN_SIGNATURE)
        refused(mint_rest_token(SID, OTHER_SECRET), Result.TOKEN_SIGNATURE, rest=True)

    def test_secret_of_another_key(self) -> None:
        # Signed with key 2's secret but naming key 1.
        refused(forge(claims(iss=SID), secret=OTHER_SECRET), Result.TOKEN_SIGNATURE)

    def test_tampered_payload(self) -> None:
        head, _, signature = mint_client_token(SID, SECRET, "alice").split(".")
        tampered = b64json(claims(userId="mallory"))
        refused(f"{head}.{tampered}.{signature}", Result.TOKEN_SIGNATURE)

    def test_tampered_grants(self) -> None:
        token = mint_client_token(SID, SECRET, "alice", subscribe=["t1"], now=1_800_000_000)
        head, payload, signature = token.split(".")
        data = json.loads(unb64(payload))
        data["subscribe"] = "t1,ALL_CALL_STATUS"
        refused(f"{head}.{b64json(data)}.{signature}", Result.TOKEN_SIGNATURE)

    def test_tampered_header(self) -> None:
        _, payload, signature = mint_client_token(SID, SECRET, "alice").split(".")
        head = b64json({"typ": "JWT", "alg": "HS256"})
        refused(f"{head}.{payload}.{signature}", Result.TOKEN_SIGNATURE)

    def test_tampered_signature(self) -> None:
        head, payload, signature = mint_client_token(SID, SECRET, "alice").split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        refused(f"{head}.{payload}.{flipped}", Result.TOKEN_SIGNATURE)
        refused(f"{head}.{payload}.{signature[:-3]}", Result.TOKEN_SIGNATURE)  # 30 bytes

    def test_empty_signature(self) -> None:
        head, payload, _ = mint_client_token(SID, SECRET, "alice").split(".")
        refused(f"{head}.{payload}.", Result.TOKEN_SIGNATURE)

    def test_signature_of_another_token(self) -> None:
        head, payload, _ = mint_client_token(SID, SECRET, "alice").split(".")
        *_, other = mint_client_token(SID, SECRET, "bob").split(".")
        refused(f"{head}.{payload}.{other}", Result.TOKEN_SIGNATURE)

    def test_bad_signature_wins_over_bad_claims(self) -> None:
        refused(forge(claims(userId=None), secret=OTHER_SECRET), Result.TOKEN_SIGNATURE)
