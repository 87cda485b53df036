"""Who/where of the current request, for audit events (set by audit.middleware, read by receivers).

Kept in contextvars (as django-auditlog does) so that services need not pass the request around.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""
    session_ref: str = ""


# The default is a frozen (immutable) dataclass, so sharing it is safe.
_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "audit_request",
    default=RequestContext(),  # noqa: B039
)


def current() -> RequestContext:
    return _current.get()


def set_current(context: RequestContext) -> contextvars.Token[RequestContext]:
    return _current.set(context)


def reset(token: contextvars.Token[RequestContext]) -> None:
    _current.reset(token)
