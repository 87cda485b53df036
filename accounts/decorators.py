"""View decorators: capability checks from the role table and step-up before clinical data."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse

from accounts.roles import Capability, has_capability
from accounts.services import step_up_is_fresh

# Streaming responses (downloads, CSV exports) are views too.
View = Callable[..., HttpResponseBase]


def capability_required(capability: Capability | str) -> Callable[[View], View]:
    """403 unless the signed-in user's role has ``capability`` (accounts/roles.py)."""
    wanted = Capability(capability)

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not has_capability(request.user, wanted):
                raise PermissionDenied("Your role does not allow this.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


# The wrappers made by step_up_required, so a test can ask which URL asks for the fresh code.
_STEP_UP_VIEWS: set[Callable[..., object]] = set()


def step_up_required(view: View) -> View:
    """Ask for a fresh one-time code before showing a patient's record (STEP_UP_SECONDS).

    Use on every view that *shows* any of a patient's record, lists of names and MRNs included;
    views that only add data (a vitals entry, a result) do not need it. Put it below
    ``capability_required``, so a role that may not use the page gets its 403 first. After the
    code the person is returned to the page they asked for (a GET's query string included; a
    POST's body is never carried over).
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not step_up_is_fresh(request):
            target = request.get_full_path() if request.method == "GET" else request.path
            return redirect(f"{reverse('accounts:step_up')}?{urlencode({'next': target})}")
        return view(request, *args, **kwargs)

    _STEP_UP_VIEWS.add(wrapped)
    return wrapped


def requires_step_up(view: Callable[..., object]) -> bool:
    """True when ``view``, through any stack of ``functools.wraps`` decorators, is behind step_up_required."""
    found = inspect.unwrap(view, stop=lambda f: f in _STEP_UP_VIEWS)
    return found in _STEP_UP_VIEWS
