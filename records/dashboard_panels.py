"""Dashboard panels of the clinical roles (registered in RecordsConfig.ready())."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.dashboards import register_panel
from accounts.roles import Role
from records import forms, selectors

PANEL_ROWS = 8


def _my_patients(request: HttpRequest) -> dict[str, Any]:
    patients, page = selectors.my_patients(actor=request.user)
    return {"patients": patients[:PANEL_ROWS], "total": page.total}


def _worklist(request: HttpRequest) -> dict[str, Any]:
    rows, page = selectors.worklist(actor=request.user)
    return {"rows": rows[:PANEL_ROWS], "total": page.total}


def _registration(request: HttpRequest) -> dict[str, Any]:
    return {"form": forms.SearchForm()}


def register() -> None:
    register_panel([Role.PHYSICIAN, Role.NURSE], "records/panels/my_patients.html", _my_patients)
    register_panel([Role.RADIOLOGY, Role.LAB], "records/panels/worklist.html", _worklist)
    register_panel([Role.FRONT_DESK, Role.EMS], "records/panels/search.html", _registration)
    register_panel([Role.PATIENT], "records/panels/my_record.html", lambda request: {})
