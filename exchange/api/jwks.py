"""``GET /.well-known/jwks.json``: the public halves of the hospital's keys (exchange/keys.py).

Partners verify the packages we sign with the ``sig`` keys and encrypt the packages they send us to
the first ``enc`` key. Public, no sign-in; cached briefly so a rotation reaches partners within
minutes. Only public members are ever written: private ones are removed by
``HospitalKeys.public_jwks`` and checked again here (fail closed).
"""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from exchange.keys import PRIVATE_MEMBERS, HospitalKeysUnavailable, hospital_keys

logger = logging.getLogger(__name__)

# Long enough to spare us repeated fetches, short enough that a rotated key is seen soon.
MAX_AGE_SECONDS = 300


@login_not_required
@require_GET
@cache_control(public=True, max_age=MAX_AGE_SECONDS)
def hospital_jwks(request: HttpRequest) -> HttpResponse:
    try:
        jwks = hospital_keys().public_jwks()
    except HospitalKeysUnavailable:
        logger.error("The hospital's keys are unavailable: /.well-known/jwks.json answers 503")
        return JsonResponse({"error": "keys unavailable"}, status=503)
    if any(PRIVATE_MEMBERS & set(key) for key in jwks["keys"]):
        logger.error("A private key member reached the public JWKS: refused")
        return JsonResponse({"error": "keys unavailable"}, status=503)
    response = JsonResponse(jwks)
    response["Content-Type"] = "application/jwk-set+json"
    # Public keys only: healthcrypt/middleware.py leaves this response's cache headers alone.
    response.public_cacheable = True  # type: ignore[attr-defined]
    return response
