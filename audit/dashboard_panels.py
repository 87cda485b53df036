"""The security dashboard's panel: open alerts by severity, recent rule failures, links (AuditConfig.ready())."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from accounts.dashboards import register_panel
from accounts.roles import Role
from audit.security_selectors import dashboard_counts


def _security(request: HttpRequest) -> dict[str, Any]:
    return {"counts": dashboard_counts(timezone.now())}


def register() -> None:
    register_panel([Role.SECURITY], "audit/security/panel.html", _security)
