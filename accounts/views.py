"""Sign-in pages and the role dashboards at ``/``."""

from __future__ import annotations

import logging

from django.contrib.auth import views as auth_views
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET

from accounts.roles import Capability, policy_for

logger = logging.getLogger(__name__)


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class LoginView(auth_views.LoginView):
    """Password sign-in. ``next`` is honoured only for paths on this site (Django's own check)."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Send each person to the dashboard of their role."""
    policy = policy_for(request.user)
    if policy is None:
        if request.user.is_superuser:
            # Operators have no clinical dashboard; the admin is their tool.
            return redirect("admin:index")
        logger.warning("Signed-in account without a usable role: user_id=%s", request.user.pk)
        raise PermissionDenied("This account has no role. Ask an administrator to assign one.")
    capabilities = sorted(policy.capabilities, key=lambda c: list(Capability).index(c))
    context = {
        "policy": policy,
        "capabilities": [c.value.replace("_", " ").capitalize() for c in capabilities],
        "opens_charts": Capability.VIEW_CHART in policy.capabilities,
    }
    return render(request, f"accounts/dashboards/{policy.role.value}.html", context)
