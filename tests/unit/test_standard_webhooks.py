"""Standard Webhooks signatures: the spec's own test vector, and what a receiver must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from porter import standard_webhooks as sw

# The published vector (standard-webhooks' libraries, test_sign_function).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

KEY = sw.decode_secret(VECTOR_SECRET)


def test_signing_matches_the_published_vector() -> None:
    assert sw.sign(KEY, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    assert sw.headers(KEY, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == {
        "webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE}


def test_the_vector_verifies_within_the_tolerance_and_not_beyond() -> None:
    received = {"Webhook-Id": VECTOR_ID, "Webhook-Timestamp": str(VECTOR_TIMESTAMP),
                "Webhook-Signature": VECTOR_SIGNATURE}
    sw.verify(KEY, received, VECTOR_BODY, now=VECTOR_TIMESTAMP + 299)
    with pytest.raises(sw.VerificationError, match="too far"):
        sw.verify(KEY, received, VECTOR_BODY, now=VECTOR_TIMESTAMP + 301)  # a replay
    with pytest.raises(sw.VerificationError, match="too far"):
        sw.verify(KEY, received, VECTOR_BODY, now=VECTOR_TIMESTAMP - 301)


@pytest.mark.parametrize("change", ["body", "id", "timestamp", "key", "version", "missing"])
def test_anything_changed_fails_to_verify(change: str) -> None:
    headers = sw.headers(KEY, "msg_1", 1000, b'{"a":1}')
    body, key = b'{"a":1}', KEY
    if change == "body":
        body = b'{"a":2}'
    elif change == "id":
        headers["webhook-id"] = "msg_2"
    elif change == "timestamp":
        headers["webhook-timestamp"] = "1001"
    elif change == "key":
        key = bytes(24)
    elif change == "version":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    else:
        del headers["webhook-signature"]
    with pytest.raises(sw.VerificationError):
        sw.verify(key, headers, body, now=1000)


def test_one_matching_signature_among_several_verifies() -> None:
    """A sender rotating its key signs with both; the receiver holding either accepts."""
    old = sw.sign(bytes(range(24)), "msg_1", 1000, b"{}")
    new = sw.sign(KEY, "msg_1", 1000, b"{}")
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1000",
               "webhook-signature": f"v1a,bm90LXVz {old} {new}"}
    sw.verify(KEY, headers, b"{}", now=1000)
    sw.verify(bytes(range(24)), headers, b"{}", now=1000)


def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body() -> None:
    body = b'{"state":"failed"}'
    expected = hmac.new(KEY, b"msg_9.1700000000." + body, hashlib.sha256).digest()
    assert sw.sign(KEY, "msg_9", 1700000000, body) == "v1," + base64.b64encode(expected).decode()


def test_an_id_with_a_dot_is_refused() -> None:
    with pytest.raises(ValueError, match=r"hold no '\.'"):
        sw.sign(KEY, "msg.1", 1000, b"{}")


@pytest.mark.parametrize("secret", [
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
    "whsec_",  # nothing
    "whsec_not base64!",
    "whsec_" + base64.b64encode(bytes(16)).decode(),  # too short: 128 bits
    "whsec_" + base64.b64encode(bytes(65)).decode(),  # too long
])
def test_secrets_not_of_the_whsec_shape_are_refused_without_echoing_them(secret: str) -> None:
    with pytest.raises(ValueError) as raised:
        sw.decode_secret(secret)
    assert str(raised.value) == sw.SECRET_SHAPE


def test_secrets_decode_with_or_without_padding() -> None:
    padded = "whsec_" + base64.b64encode(bytes(range(25))).decode()
    assert padded.endswith("=")
    assert sw.decode_secret(padded) == sw.decode_secret(padded.rstrip("=")) == bytes(range(25))
