"""The oversight dashboards' panels (registered from AuditConfig.ready()): metadata only, never patient data.

Security: open alerts by severity with the newest few, recent rule failures, current lockouts.
Compliance: the break-the-glass grants still awaiting review.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from accounts.dashboards import register_panel
from accounts.lockout import lockout_counts
from accounts.roles import Capability, roles_with
from audit.models import Alert
from audit.security_selectors import break_glass_awaiting_review, dashboard_counts, newest_open_alerts


def _security(request: HttpRequest) -> dict[str, Any]:
    labels = dict(Alert.Severity.choices)
    newest = [{**row, "severity_label": labels.get(row["severity"], "")} for row in newest_open_alerts()]
    return {"counts": dashboard_counts(timezone.now()), "newest": newest}


def _lockouts(request: HttpRequest) -> dict[str, Any]:
    accounts, addresses = lockout_counts()
    return {"accounts": accounts, "addresses": addresses}


def _compliance(request: HttpRequest) -> dict[str, Any]:
    return {"awaiting": break_glass_awaiting_review()}


def register() -> None:
    register_panel(roles_with(Capability.REVIEW_ALERTS), "audit/security/panel.html", _security)
    register_panel(roles_with(Capability.MANAGE_LOCKOUTS), "audit/security/lockouts_panel.html", _lockouts)
    register_panel(roles_with(Capability.VIEW_DISCLOSURES), "audit/compliance_panel.html", _compliance)
