"""How the fake reads credentials: app JWTs (RS256), installation tokens and user tokens."""

from __future__ import annotations

import base64
import binascii
import secrets
import string

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.github_state import AuthKind

# GitHub allows a little clock drift on top of its 10-minute JWT lifetime.
JWT_MAX_LIFETIME = 600
JWT_LEEWAY = 30
TOKEN_LIFETIME = 3600


def generate_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY", as GitHub issues
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(private_key_pem: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def new_token(*, app_id: str, stateless: bool) -> str:
    alphabet = string.ascii_letters + string.digits
    if stateless:
        # GitHub's 2026 stateless format: ghs_<APPID>_<JWT-like>, ~520 characters with dots.
        parts = ["".join(secrets.choice(alphabet) for _ in range(n)) for n in (36, 300, 160)]
        return f"ghs_{app_id}_" + ".".join(parts)
    return "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))


def presented(header: str | None) -> tuple[AuthKind, str | None]:
    """Classify an Authorization header: (kind, credential). Basic carries a token as password."""
    if not header:
        return "none", None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "none", None
        _user, _, password = decoded.partition(":")
        if not password:
            return "none", None
        return ("user" if password.startswith("ghu_") else "installation"), password
    if scheme not in ("bearer", "token") or not value:
        return "none", None
    if scheme == "bearer" and not value.startswith("ghs_") and value.count(".") == 2:
        return "jwt", value
    return ("user" if value.startswith("ghu_") else "installation"), value


def verify_jwt(
    token: str, *, public_key: str, app_id: str, client_id: str, now: float
) -> str | None:
    """None when the JWT is one GitHub would accept, else GitHub's complaint."""
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_iss": False,
                "verify_aud": False,
                "require": ["iat", "exp", "iss"],
            },
        )
    except jwt.PyJWTError:
        return "A JSON web token could not be decoded"
    iss, iat, exp = claims["iss"], claims["iat"], claims["exp"]
    # GitHub takes the app id (as string or number) or the client id as issuer.
    if str(iss) not in (app_id, client_id):
        return "'Issuer' claim ('iss') must be an Integer"
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        return "A JSON web token could not be decoded"
    if exp - iat > JWT_MAX_LIFETIME + JWT_LEEWAY or exp > now + JWT_MAX_LIFETIME + JWT_LEEWAY:
        return "'Expiration time' claim ('exp') is too far in the future"
    if exp <= now:
        return (
            "'Expiration time' claim ('exp') must be a numeric value representing the future "
            "time at which the assertion expires"
        )
    if iat > now + JWT_LEEWAY:
        return (
            "'Issued at' claim ('iat') must be an Integer representing the time that the "
            "assertion was issued"
        )
    return None
