"""The research panels on the role dashboards (registered from ResearchConfig.ready()): counts only."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.dashboards import register_panel
from accounts.roles import Capability, roles_with
from research.models import DatasetRequest

S = DatasetRequest.Status


def _researcher(request: HttpRequest) -> dict[str, Any]:
    mine = DatasetRequest.objects.filter(researcher_id=request.user.pk)
    return {
        "open": mine.filter(status__in=[S.SUBMITTED, S.APPROVED]).count(),
        "built": mine.filter(status=S.BUILT).count(),
    }


def _compliance(request: HttpRequest) -> dict[str, Any]:
    return {"submitted": DatasetRequest.objects.filter(status=S.SUBMITTED).count()}


def register() -> None:
    register_panel(roles_with(Capability.REQUEST_DATASET), "research/researcher_panel.html", _researcher)
    register_panel(roles_with(Capability.APPROVE_DATASET), "research/compliance_panel.html", _compliance)
