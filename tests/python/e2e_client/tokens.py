"""OAuth 2.0 access tokens of a VAL server, minted with PyJWT.

An access token is a compact JWS (ES256) carrying the claims the wire contract
lists: iss, exp, iat, nbf, client_id, scope (space-separated, containing
"ss-kpp"), SKeyProv and vsp_id. Every claim can be overridden or dropped, so
that a test can build a token that is wrong in exactly one way.
"""

import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

DROP = object()  # claim value meaning "leave this claim out"


def new_ec_key():
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(private_key):
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem_or_key):
    """A private key object from PEM bytes/str, or the object itself."""
    if isinstance(pem_or_key, str):
        pem_or_key = pem_or_key.encode()
    if isinstance(pem_or_key, bytes):
        return serialization.load_pem_private_key(pem_or_key, password=None)
    return pem_or_key


class TokenMinter:
    """Mints access tokens for one issuer and its signing key."""

    def __init__(self, issuer, private_key, kid=None, scope="ss-kpp", lifetime=600):
        self.issuer = issuer
        self.key = load_private_key(private_key)
        self.kid = kid
        self.scope = scope
        self.lifetime = lifetime

    def claims(self, client_id, vsp_id, now=None, **overrides):
        """The claims of a good token, with overrides applied (DROP removes)."""
        now = int(time.time()) if now is None else int(now)
        claims = {
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "client_id": client_id,
            "scope": self.scope,
            "SKeyProv": True,
            "vsp_id": vsp_id,
        }
        for name, value in overrides.items():
            if value is DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def mint(self, client_id, vsp_id, algorithm="ES256", key=None, now=None, **overrides):
        """A compact JWS of the claims, signed with this minter's key or `key`."""
        headers = {"typ": "JWT"}
        if self.kid is not None:
            headers["kid"] = self.kid
        payload = self.claims(client_id, vsp_id, now=now, **overrides)
        signing_key = self.key if key is None else key
        if algorithm == "none":
            return jwt.encode(payload, None, algorithm="none", headers=headers)
        return jwt.encode(payload, signing_key, algorithm=algorithm, headers=headers)


def tamper_signature(token):
    """The same token with one bit of its signature flipped."""
    head, payload, sig = token.split(".")
    raw = jwt.utils.base64url_decode(sig.encode())
    raw = bytes([raw[0] ^ 0x01]) + raw[1:]
    return "%s.%s.%s" % (head, payload, jwt.utils.base64url_encode(raw).decode())
