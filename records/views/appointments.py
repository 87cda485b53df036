"""Appointments: a department's day schedule, booking from the registration page, check-in and cancel.

The schedule lists names, so it asks for a fresh code; so does booking, whose form shows the patient
banner. Check-in and cancel only change state (POST) and answer 404 for an appointment outside the
desk's schedule or of another patient than the URL's, 409 for one that is already checked in or
cancelled. The day and the department are query parameters: no patient value is ever in a URL.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import capability_required, step_up_required
from accounts.roles import Capability, DataCategory, has_capability
from healthcrypt.views import render_error
from records import forms, selectors, services
from records.views.base import _write

C = Capability


def schedule_url(day: datetime.date, department_id: int | None = None) -> str:
    query = {"day": day.isoformat(), **({"department": str(department_id)} if department_id is not None else {})}
    return f"{reverse('records:schedule')}?{urlencode(query)}"


@require_GET
@capability_required(C.VIEW_SCHEDULE)
@step_up_required
def schedule(request: HttpRequest) -> HttpResponse:
    """A day's appointments: a department's (the front desk) or the physician's own."""
    departments = selectors.schedule_departments(actor=request.user)
    form = forms.ScheduleFilterForm(request.GET or None, departments=departments)
    if request.GET and not form.is_valid():
        return render(request, "records/schedule.html", {"form": form, "schedule": None}, status=400)
    data = form.cleaned_data if request.GET else {}
    day = data.get("day") or timezone.localdate()
    department_id = data.get("department")
    if department_id is None and len(departments) == 1:
        department_id = departments[0][0]
    result = selectors.day_schedule(actor=request.user, day=day, department_id=department_id)
    context = {
        "form": form,
        "schedule": result,
        "can_book": has_capability(request.user, C.BOOK_APPOINTMENT),
        "previous_url": schedule_url(day - datetime.timedelta(days=1), department_id),
        "next_url": schedule_url(day + datetime.timedelta(days=1), department_id),
        "today": timezone.localdate(),
    }
    return render(request, "records/schedule.html", context)


@require_http_methods(["GET", "POST"])
@capability_required(C.BOOK_APPOINTMENT)
@step_up_required
def appointment_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Book the patient (from their registration page) into a schedule of the desk's departments."""
    departments = selectors.schedule_departments(actor=request.user)
    cancel = reverse("records:registration_detail", args=[patient_id])
    context: dict[str, Any] = {"title": "Book an appointment", "submit": "Book", "cancel": cancel}

    def banner() -> dict[str, Any]:
        chart = selectors.chart_for(
            actor=request.user, patient_id=patient_id, purpose="registration", categories=[DataCategory.DEMOGRAPHICS]
        )
        return {"chart": chart}

    if request.method == "GET":
        form = forms.AppointmentForm(departments=departments)
        return render(request, "records/form.html", {**context, **banner(), "form": form})
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.ENCOUNTERS)
    form = forms.AppointmentForm(request.POST, departments=departments)
    booked: list[Any] = []

    def book(d: dict[str, Any]) -> None:
        booked.append(
            services.appointment_book(
                actor=request.user,
                patient_id=patient_id,
                department_id=d["department"],
                starts_at=d["starts_at"],
                duration_minutes=d["duration_minutes"],
                clinician=d["clinician"],
                reason=d["reason"],
            )
        )

    response = _write(
        request,
        form=form,
        action=book,
        success=cancel,
        template="records/form.html",
        context=context,
        success_message="Appointment booked.",
        error_context=banner,
    )
    if booked:
        appointment = booked[0]
        return redirect(schedule_url(timezone.localdate(appointment.starts_at), appointment.department_id))
    return response


def _after_change(appointment: Any) -> HttpResponse:
    return redirect(schedule_url(timezone.localdate(appointment.starts_at), appointment.department_id))


@require_POST
@capability_required(C.BOOK_APPOINTMENT)
def appointment_check_in(request: HttpRequest, patient_id: int, appointment_id: int) -> HttpResponse:
    """The patient has arrived: open their outpatient encounter. Twice, or when cancelled: a 409."""
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.ENCOUNTERS)
    try:
        appointment = services.appointment_check_in(
            actor=request.user, patient_id=patient_id, appointment_id=appointment_id
        )
    except services.AppointmentConflict as conflict:
        return render_error(request, 409, "Cannot check in", " ".join(conflict.messages))
    messages.success(request, "Checked in: the visit is open.")
    return _after_change(appointment)


@require_POST
@capability_required(C.BOOK_APPOINTMENT)
def appointment_cancel(request: HttpRequest, patient_id: int, appointment_id: int) -> HttpResponse:
    """Cancel a booked appointment; one already checked in or cancelled is a 409."""
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.ENCOUNTERS)
    try:
        appointment = services.appointment_cancel(
            actor=request.user, patient_id=patient_id, appointment_id=appointment_id
        )
    except services.AppointmentConflict as conflict:
        return render_error(request, 409, "Cannot cancel", " ".join(conflict.messages))
    messages.success(request, "Appointment cancelled.")
    return _after_change(appointment)
