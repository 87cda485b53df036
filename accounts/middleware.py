"""Session rules for every request: a second factor, an idle time-out and an absolute lifetime."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django_otp.middleware import is_verified

from accounts.services import AUTH_AT_KEY, LAST_SEEN_KEY, LOGOUT_REASON_ATTR

logger = logging.getLogger(__name__)

# How stale the idle clock may get before a request moves it. A person is signed out between
# SESSION_IDLE_SECONDS - this and SESSION_IDLE_SECONDS after their last request (never later: the
# slack errs towards signing out), in exchange for no session write on most requests (issue 11).
# A tenth of the idle time at most, so a short test time-out keeps its meaning.
LAST_SEEN_STEP_SECONDS = 60


def last_seen_step() -> float:
    return min(LAST_SEEN_STEP_SECONDS, settings.SESSION_IDLE_SECONDS / 10)


class SessionSecurityMiddleware:
    """Ends sessions that must not go on (HIPAA automatic logoff, §164.312(a)(2)(iii)).

    - A signed-in session whose second factor is not verified is ended: sign-in only ever calls
      ``login()`` after the code, so such a session was made some other way. Fail closed.
    - No request for SESSION_IDLE_SECONDS: signed out, asked to sign in again.
    - Older than SESSION_ABSOLUTE_SECONDS since sign-in: signed out whatever the activity.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            now = time.time()
            session = request.session
            reason = ""
            if not is_verified(user):
                reason = "unverified"
            elif now - float(session.get(LAST_SEEN_KEY, 0)) > settings.SESSION_IDLE_SECONDS:
                reason = "idle"
            elif now - float(session.get(AUTH_AT_KEY, 0)) > settings.SESSION_COOKIE_AGE:
                reason = "expired"
            if reason:
                setattr(request, LOGOUT_REASON_ATTR, reason)
                logout(request)
                if reason == "idle":
                    minutes = settings.SESSION_IDLE_SECONDS // 60
                    messages.info(request, f"You were signed out after {minutes} minutes without activity.")
                elif reason == "expired":
                    messages.info(request, "Your session reached its maximum length. Please sign in again.")
            elif now - float(session.get(LAST_SEEN_KEY, 0)) >= last_seen_step():
                # Moved only when it has aged a step: a session write (a database UPDATE with the
                # default engine) on every request cost every page a query and serialised a
                # person's parallel requests on the session row.
                session[LAST_SEEN_KEY] = now
        return self.get_response(request)
