from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter.crypto import KeyRing, Secret, last4, needs_rotation, open_sealed, seal
from porter.errors import ConfigError, CryptoError

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
RING = KeyRing.parse(f"new:{KEY_A}")


def _reseal_body(token: str, body: bytes) -> str:
    version, kid, _ = token.split(".")
    return f"{version}.{kid}.{base64.urlsafe_b64encode(body).decode().rstrip('=')}"


@given(plaintext=st.text(), user_id=st.text(max_size=20), name=st.text(max_size=20))
def test_seal_then_open_gives_back_the_plaintext(plaintext: str, user_id: str, name: str) -> None:
    token = seal(RING, plaintext, user_id=user_id, name=name)
    assert open_sealed(RING, token, user_id=user_id, name=name) == plaintext


def test_token_shape_is_compact_and_names_the_key() -> None:
    token = seal(RING, "sk-ant-canary", user_id="42", name="anthropic_api_key")
    version, kid, body = token.split(".")
    assert (version, kid) == ("v1", "new")
    assert "sk-ant-canary" not in token
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_sealing_twice_uses_fresh_nonces() -> None:
    one = seal(RING, "same", user_id="1", name="n")
    two = seal(RING, "same", user_id="1", name="n")
    assert one != two


@pytest.mark.parametrize(
    ("user_id", "name"),
    [("43", "anthropic_api_key"), ("42", "openai_api_key"), ("4", "2anthropic_api_key")],
)
def test_value_moved_to_another_user_or_name_does_not_open(user_id: str, name: str) -> None:
    token = seal(RING, "secret", user_id="42", name="anthropic_api_key")
    with pytest.raises(CryptoError, match="failed to authenticate"):
        open_sealed(RING, token, user_id=user_id, name=name)


def test_wrong_key_under_the_same_kid_fails() -> None:
    token = seal(RING, "secret", user_id="1", name="n")
    impostor = KeyRing.parse(f"new:{KEY_B}")
    with pytest.raises(CryptoError, match="failed to authenticate"):
        open_sealed(impostor, token, user_id="1", name="n")


def test_unknown_kid_is_named_in_the_error() -> None:
    token = seal(KeyRing.parse(f"gone:{KEY_B}"), "canary-value", user_id="1", name="n")
    with pytest.raises(CryptoError, match="'gone'") as excinfo:
        open_sealed(RING, token, user_id="1", name="n")
    assert "canary" not in excinfo.value.message


@pytest.mark.parametrize("index", [0, 5, 12, 20, -1])
def test_any_flipped_byte_is_detected(index: int) -> None:
    token = seal(RING, "the plaintext", user_id="1", name="n")
    body = token.split(".")[2]
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[index] ^= 0x01
    with pytest.raises(CryptoError):
        open_sealed(RING, _reseal_body(token, bytes(raw)), user_id="1", name="n")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1.new",
        "v2.new.AAAA",
        "v1.new.not base64!",
        "v1.new.AAAA",  # shorter than nonce + tag
        "v1.ne:w.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.new.AAAA.extra",
    ],
)
def test_malformed_tokens_raise_crypto_error(token: str) -> None:
    with pytest.raises(CryptoError):
        open_sealed(RING, token, user_id="1", name="n")


def test_rotation_old_tokens_open_and_are_flagged_for_resealing() -> None:
    old_ring = KeyRing.parse(f"old:{KEY_B}")
    old_token = seal(old_ring, "value", user_id="1", name="n")
    ring = KeyRing.parse(f"new:{KEY_A},old:{KEY_B}")

    assert ring.current_kid == "new"
    assert open_sealed(ring, old_token, user_id="1", name="n") == "value"
    assert needs_rotation(ring, old_token)

    plain = open_sealed(ring, old_token, user_id="1", name="n")
    resealed = seal(ring, plain, user_id="1", name="n")
    assert resealed.split(".")[1] == "new"
    assert not needs_rotation(ring, resealed)


def test_rotate_puts_a_fresh_key_first_and_keeps_the_old_ones() -> None:
    old_token = seal(RING, "value", user_id="1", name="n")
    rotated = RING.rotate("k2")
    assert rotated.kids == ("k2", "new")
    assert open_sealed(rotated, old_token, user_id="1", name="n") == "value"
    assert needs_rotation(rotated, old_token)


def test_generate_serialize_parse_round_trip() -> None:
    ring = KeyRing.generate()
    assert KeyRing.parse(ring.serialize()) == ring
    token = seal(ring, "value", user_id="1", name="n")
    assert open_sealed(KeyRing.parse(ring.serialize()), token, user_id="1", name="n") == "value"
    assert KeyRing.generate("mine").current_kid == "mine"
    assert KeyRing.generate().current_kid != KeyRing.generate().current_kid


def test_parse_accepts_urlsafe_unpadded_keys_and_spaces() -> None:
    urlsafe = base64.urlsafe_b64encode(bytes(range(200, 232))).decode().rstrip("=")
    ring = KeyRing.parse(f" a:{urlsafe} , b:{KEY_A} ")
    assert ring.kids == ("a", "b")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (KEY_A, "entry 1 is not of the form kid:base64key"),
        (f"a:{KEY_A},", "entry 2 is not of the form"),
        (f":{KEY_A}", "entry 1: the key id"),
        (f"a.b:{KEY_A}", "entry 1: the key id"),
        (f"a,b:{KEY_A}", "entry 1 is not of the form"),
        (f"a:{KEY_A},a:{KEY_B}", "entry 2: key id 'a' is used twice"),
        ("a:not*base64", "entry 1: the key is not valid base64"),
        (f"a:{base64.b64encode(b'short').decode()}", "must be 32 bytes, not 5"),
    ],
)
def test_parse_errors_are_one_clear_line(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match="PORTER_SECRET_KEYS") as excinfo:
        KeyRing.parse(text)
    message = excinfo.value.message
    assert reason in message
    assert "\n" not in message
    assert KEY_A not in message and KEY_A.rstrip("=") not in message


def test_key_pasted_where_the_kid_goes_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as excinfo:
        KeyRing.parse(f"{KEY_A}:{KEY_B}")
    assert KEY_A not in excinfo.value.message
    assert KEY_A[:10] not in excinfo.value.message


def test_repr_of_a_ring_shows_no_key_material() -> None:
    ring = KeyRing.parse(f"new:{KEY_A}")
    assert repr(ring) == "KeyRing(kids=['new'])"


def test_last4() -> None:
    assert last4("sk-ant-api03-abcd") == "…abcd"
    assert last4("12345678") == "…5678"
    assert last4("1234567") == "…"
    assert last4("") == "…"
    assert last4(Secret("ghp_0123456789wxyz")) == "…wxyz"


def test_secret_prints_masked_everywhere() -> None:
    secret = Secret("hunter2-canary")
    assert secret.get() == "hunter2-canary"
    for shown in (str(secret), repr(secret), f"{secret}", f"{secret!r}", str([secret])):
        assert "hunter2" not in shown
        assert "**********" in shown
    assert secret == Secret("hunter2-canary")
    assert secret != Secret("other")
    assert len({secret, Secret("hunter2-canary")}) == 1
    assert not Secret("")
