"""Checking a SMART Backend Services client assertion (RFC 7523 ``private_key_jwt``).

The assertion is a JWT the partner signs with its private key: ``iss`` = ``sub`` = its client_id,
``aud`` = our token URL, ``exp`` at most five minutes ahead, a fresh ``jti``, and a ``kid`` naming one
of the public keys compliance registered. Only RS384 and ES384 are accepted: the algorithm list is
passed to joserfc explicitly, so ``none`` and the HMAC family (the "sign with the public key as an
HMAC secret" confusion) never reach a key.

Every refusal raises ``AssertionRefused`` with an internal reason for the audit trail; the caller
answers with the OAuth error code alone.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from exchange.partners.jwks import key_for
from exchange.partners.models import Partner, is_client_id

ALGORITHMS = ("RS384", "ES384")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART Backend Services: the assertion's exp is no more than five minutes in the future.
MAX_ASSERTION_SECONDS = 300
# Clocks drift: an iat/nbf this far in the future is still accepted (and exp this far past the
# limit), never more. exp itself must still be in the future.
CLOCK_SKEW_SECONDS = 30
# A compact JWS of an RSA-4096 signature and a small claim set is about 1.5 kB; 8 kB is generous.
MAX_ASSERTION_BYTES = 8192
MAX_JTI_LENGTH = 200
# A jti or kid is an identifier: printable ASCII, no spaces or control characters (a NUL byte would
# reach PostgreSQL, which refuses it in a text column, as a 500 instead of a refusal).
_IDENTIFIER = re.compile(r"[\x21-\x7e]+")


class AssertionRefused(Exception):
    """The assertion is not acceptable. ``error`` is the OAuth code, ``reason`` is for the audit."""

    def __init__(self, error: str, reason: str, partner: Partner | None = None, client_id: str = "") -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.partner = partner
        self.client_id = client_id


@dataclass(frozen=True)
class VerifiedAssertion:
    partner: Partner
    jti: str
    expires_at: datetime.datetime


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, read before the signature is checked: only to find the partner and its key."""
    try:
        obj = jws.extract_compact(assertion.encode("ascii"))
        header = dict(obj.headers())
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, TypeError, UnicodeError) as exc:
        raise AssertionRefused("invalid_client", "malformed") from exc
    if not isinstance(claims, dict):
        raise AssertionRefused("invalid_client", "malformed")
    return header, claims


def _number(value: Any) -> float | None:
    """A NumericDate as a finite float; None for anything else (a bool, a string, NaN, infinity, or an
    integer too large for a float, which json accepts)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _identifier(value: Any, *, longest: int) -> str | None:
    return value if isinstance(value, str) and len(value) <= longest and _IDENTIFIER.fullmatch(value) else None


def verify_assertion(assertion: str, *, token_url: str, now: float | None = None) -> VerifiedAssertion:
    """The partner whose key signed ``assertion``, after every check of SMART Backend Services.

    Raises AssertionRefused. The signature is verified before any claim is trusted; iss and sub
    are only used beforehand to pick the partner whose keys may verify it.
    """
    now = time.time() if now is None else now
    if not assertion or len(assertion) > MAX_ASSERTION_BYTES:
        raise AssertionRefused("invalid_client", "malformed")
    header, claims = _unverified(assertion)
    client_id = claims.get("iss")
    if not is_client_id(client_id):
        raise AssertionRefused("invalid_client", "no_issuer")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise AssertionRefused("invalid_client", "algorithm", client_id=client_id)
    partner = Partner.objects.filter(client_id=client_id).first()
    if partner is None:
        raise AssertionRefused("invalid_client", "unknown_client", client_id=client_id)
    if not partner.is_active:
        raise AssertionRefused("invalid_client", "partner_suspended", partner=partner)
    kid = _identifier(header.get("kid"), longest=256)
    if kid is None:
        raise AssertionRefused("invalid_client", "no_kid", partner=partner)
    key = key_for(partner.jwks, kid, str(alg))
    if key is None:
        raise AssertionRefused("invalid_client", "unknown_kid", partner=partner)
    try:
        token = jwt.decode(assertion, key, algorithms=[str(alg)])
    except (JoseError, ValueError, TypeError) as exc:
        raise AssertionRefused("invalid_client", "bad_signature", partner=partner) from exc
    claims = token.claims
    if claims.get("iss") != partner.client_id or claims.get("sub") != partner.client_id:
        raise AssertionRefused("invalid_client", "iss_sub", partner=partner)
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if token_url not in audiences:
        raise AssertionRefused("invalid_client", "audience", partner=partner)
    exp = _number(claims.get("exp"))
    if exp is None:
        raise AssertionRefused("invalid_client", "no_exp", partner=partner)
    if exp <= now:
        raise AssertionRefused("invalid_client", "expired", partner=partner)
    if exp > now + MAX_ASSERTION_SECONDS + CLOCK_SKEW_SECONDS:
        raise AssertionRefused("invalid_client", "exp_too_far", partner=partner)
    for name in ("iat", "nbf"):
        if name in claims:
            value = _number(claims[name])
            if value is None or value > now + CLOCK_SKEW_SECONDS:
                raise AssertionRefused("invalid_client", f"bad_{name}", partner=partner)
    jti = _identifier(claims.get("jti"), longest=MAX_JTI_LENGTH)
    if jti is None:
        raise AssertionRefused("invalid_client", "no_jti", partner=partner)
    return VerifiedAssertion(partner=partner, jti=jti, expires_at=datetime.datetime.fromtimestamp(exp, tz=datetime.UTC))
