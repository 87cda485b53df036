"""Dashboard panels of the clinical roles (registered in RecordsConfig.ready())."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.dashboards import register_panel
from accounts.roles import Capability, Role, roles_with
from records import forms, selectors

PANEL_ROWS = 8


def _my_patients(request: HttpRequest) -> dict[str, Any]:
    patients, page = selectors.my_patients(actor=request.user)
    return {"patients": patients[:PANEL_ROWS], "total": page.total}


def _worklist(request: HttpRequest) -> dict[str, Any]:
    rows, page = selectors.worklist(actor=request.user)
    return {"rows": rows[:PANEL_ROWS], "total": page.total}


def _critical_results(request: HttpRequest) -> dict[str, Any]:
    # Clinical values: registered with shows_record, so built only within a fresh step-up.
    return {"rows": selectors.critical_results_for_orderer(actor=request.user, limit=PANEL_ROWS)}


def _registration(request: HttpRequest) -> dict[str, Any]:
    return {"form": forms.SearchForm()}


def _break_glass(request: HttpRequest) -> dict[str, Any]:
    return {"grants": selectors.my_active_grants(actor=request.user)}


def register() -> None:
    # The panels that list patients by name and MRN need a fresh step-up, like their pages (records/urls.py).
    # The ordering physician's critical laboratory results first: they need acting on today.
    register_panel(
        roles_with(Capability.PLACE_ORDER),
        "records/panels/critical_results.html",
        _critical_results,
        shows_record=True,
        title="Critical results of my orders",
    )
    register_panel(
        [Role.PHYSICIAN, Role.NURSE],
        "records/panels/my_patients.html",
        _my_patients,
        shows_record=True,
        title="My patients",
    )
    register_panel(
        [Role.RADIOLOGY, Role.LAB], "records/panels/worklist.html", _worklist, shows_record=True, title="Worklist"
    )
    register_panel([Role.FRONT_DESK], "records/panels/search.html", _registration)
    register_panel([Role.PATIENT], "records/panels/my_record.html", lambda request: {})
    # Emergency access: first for ems (their only way in), after the usual panels for the others.
    register_panel(
        roles_with(Capability.BREAK_GLASS),
        "records/panels/break_glass.html",
        _break_glass,
        shows_record=True,
        title="Emergency access",
    )
