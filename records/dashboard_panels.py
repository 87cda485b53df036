"""Dashboard panels of the clinical roles (registered in RecordsConfig.ready()): each role's work of today.

A panel that names a patient is registered with ``shows_record`` (built only within a fresh step-up);
the worklist counts name nobody and show without one. A panel that reads patients' records is a read
in steps (records/selectors/access.py ``Access``): the dashboard runs them together, so that the page
records one access event per patient, listing every section its panels showed of them, before any
panel decrypts (``run_together``, registered with accounts.dashboards).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from accounts.dashboards import register_panel
from accounts.roles import Capability, Role, roles_with
from records import forms, selectors
from records.selectors.access import Steps

PANEL_ROWS = 8


def _my_patients(request: HttpRequest) -> Steps[dict[str, Any]]:
    patients, page = yield from selectors.my_patients.steps(actor=request.user)
    return {"patients": patients[:PANEL_ROWS], "total": page.total}


def _worklist(request: HttpRequest) -> Steps[dict[str, Any]]:
    rows, page = yield from selectors.worklist.steps(actor=request.user)
    return {"rows": rows[:PANEL_ROWS], "total": page.total}


def _worklist_counts(request: HttpRequest) -> dict[str, Any]:
    return {"counts": selectors.worklist_counts(actor=request.user)}


def _critical_results(request: HttpRequest) -> Steps[dict[str, Any]]:
    # Clinical values: registered with shows_record, so built only within a fresh step-up.
    return {"rows": (yield from selectors.critical_results_for_orderer.steps(actor=request.user, limit=PANEL_ROWS))}


def _new_results(request: HttpRequest) -> Steps[dict[str, Any]]:
    return {
        "rows": (yield from selectors.new_results_for_orderer.steps(actor=request.user, limit=PANEL_ROWS)),
        "hours": selectors.NEW_RESULTS_HOURS,
    }


def _pending_orders(request: HttpRequest) -> Steps[dict[str, Any]]:
    rows, total = yield from selectors.pending_orders_for_orderer.steps(actor=request.user, limit=PANEL_ROWS)
    return {"rows": rows, "total": total}


def _ward(request: HttpRequest) -> Steps[dict[str, Any]]:
    rows, total = yield from selectors.ward_list.steps(actor=request.user)
    return {"rows": rows, "total": total}


def _due_medications(request: HttpRequest) -> Steps[dict[str, Any]]:
    return {
        "rows": (yield from selectors.due_medications.steps(actor=request.user, limit=PANEL_ROWS)),
        "within_minutes": int(selectors.DUE_WITHIN.total_seconds() // 60),
    }


def _missing_vitals(request: HttpRequest) -> Steps[dict[str, Any]]:
    rows, total = yield from selectors.missing_vitals.steps(actor=request.user, limit=PANEL_ROWS)
    return {"rows": rows, "total": total, "hours": int(selectors.VITALS_INTERVAL.total_seconds() // 3600)}


def _arrivals(request: HttpRequest) -> Steps[dict[str, Any]]:
    rows, total = yield from selectors.arrivals_today.steps(actor=request.user, limit=PANEL_ROWS)
    return {"rows": rows, "total": total}


def _appointments_today(request: HttpRequest) -> Steps[dict[str, Any]]:
    departments = selectors.schedule_departments(actor=request.user)
    department_id = departments[0][0] if len(departments) == 1 else None
    schedule = yield from selectors.day_schedule.steps(
        actor=request.user, day=timezone.localdate(), department_id=department_id, limit=PANEL_ROWS
    )
    return {"schedule": schedule}


def _registration(request: HttpRequest) -> dict[str, Any]:
    return {"form": forms.PatientSearchForm()}


def _break_glass(request: HttpRequest) -> Steps[dict[str, Any]]:
    return {"grants": (yield from selectors.my_active_grants.steps(actor=request.user))}


def register() -> None:
    # The panels that list patients by name and MRN need a fresh step-up, like their pages (records/urls.py).
    # The ordering physician's critical laboratory results first: they need acting on today.
    ordering = roles_with(Capability.PLACE_ORDER)
    register_panel(
        ordering,
        "records/panels/critical_results.html",
        _critical_results,
        shows_record=True,
        title="Critical results of my orders",
    )
    register_panel(
        ordering, "records/panels/new_results.html", _new_results, shows_record=True, title="New results of my orders"
    )
    register_panel(
        [Role.PHYSICIAN, Role.NURSE],
        "records/panels/my_patients.html",
        _my_patients,
        shows_record=True,
        title="My patients",
    )
    register_panel(
        ordering, "records/panels/pending_orders.html", _pending_orders, shows_record=True, title="My pending orders"
    )
    # The nurse's ward: who is in which bed, which doses are due, whose vitals are missing.
    register_panel(
        roles_with(Capability.ADMINISTER_MEDICATION),
        "records/panels/due_medications.html",
        _due_medications,
        shows_record=True,
        title="Due medications",
    )
    register_panel(
        [Role.NURSE], "records/panels/missing_vitals.html", _missing_vitals, shows_record=True, title="Missing vitals"
    )
    register_panel([Role.NURSE], "records/panels/ward.html", _ward, shows_record=True, title="Ward list")
    # Radiology and the laboratory: the counts name nobody, so they show before the step-up.
    register_panel([Role.RADIOLOGY, Role.LAB], "records/panels/worklist_counts.html", _worklist_counts)
    register_panel(
        [Role.RADIOLOGY, Role.LAB], "records/panels/worklist.html", _worklist, shows_record=True, title="Worklist"
    )
    # The front desk: today's appointments and arrivals; a physician sees the appointments booked with them.
    register_panel(
        roles_with(Capability.VIEW_SCHEDULE),
        "records/panels/appointments_today.html",
        _appointments_today,
        shows_record=True,
        title="Today's appointments",
    )
    register_panel(
        roles_with(Capability.BOOK_APPOINTMENT),
        "records/panels/arrivals_today.html",
        _arrivals,
        shows_record=True,
        title="Today's arrivals",
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
