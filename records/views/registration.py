"""The front desk: registration, demographics, admission and discharge, the care team."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import capability_required, step_up_required
from accounts.roles import Capability, DataCategory, has_capability
from healthcrypt.views import render_error
from records import forms, selectors, services
from records.views.base import _apply_validation_error, _form_error_response, _write

C = Capability


@require_http_methods(["GET", "POST"])
@capability_required(C.REGISTER_PATIENT)
def register(request: HttpRequest) -> HttpResponse:
    form = forms.RegisterForm(request.POST or None)
    context = {"form": form, "title": "Register a patient", "submit": "Register"}
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        confirm = data.pop("confirm_not_duplicate")
        try:
            patient = services.patient_register(actor=request.user, allow_possible_duplicate=confirm, **data)
        except ValidationError as error:
            _apply_validation_error(form, error)
        else:
            messages.success(request, "The patient is registered.")
            return redirect("records:registration_detail", patient_id=patient.pk)
    if request.method == "POST":
        return _form_error_response(request, "records/form.html", context)
    return render(request, "records/form.html", context)


@require_GET
@capability_required(C.VIEW_DEMOGRAPHICS)
@step_up_required
def registration_detail(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Demographics, care team and stays: what registration needs, no clinical data."""
    chart = selectors.chart_for(
        actor=request.user,
        patient_id=patient_id,
        purpose="registration",
        categories=[selectors.D.DEMOGRAPHICS, selectors.D.CARE_TEAM, selectors.D.ENCOUNTERS],
    )
    context = {
        "chart": chart,
        "admit_form": forms.AdmitForm(),
        "assign_form": forms.AssignForm(),
        "can_edit": has_capability(request.user, C.EDIT_DEMOGRAPHICS),
        "can_book": has_capability(request.user, C.BOOK_APPOINTMENT),
    }
    return render(request, "records/registration_detail.html", context)


@require_http_methods(["GET", "POST"])
@capability_required(C.EDIT_DEMOGRAPHICS)
@step_up_required
def edit_demographics(request: HttpRequest, patient_id: int) -> HttpResponse:
    success = reverse("records:registration_detail", args=[patient_id])
    if request.method == "GET":
        chart = selectors.chart_for(
            actor=request.user, patient_id=patient_id, purpose="registration", categories=[selectors.D.DEMOGRAPHICS]
        )
        p = chart.patient
        initial = {name: getattr(p, name) for name in forms.DemographicsForm.base_fields if hasattr(p, name)}
        form = forms.DemographicsForm(initial=initial)
        return render(
            request,
            "records/form.html",
            {"form": form, "title": "Edit demographics", "submit": "Save", "cancel": success},
        )
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.DEMOGRAPHICS)
    form = forms.DemographicsForm(request.POST)
    context = {"title": "Edit demographics", "submit": "Save", "cancel": success}

    def save(data: dict[str, Any]) -> None:
        # An empty National ID field keeps the stored one (the form never shows it in full).
        if not data.get("national_id"):
            data.pop("national_id", None)
        services.patient_update_demographics(actor=request.user, patient_id=patient_id, **data)

    return _write(
        request,
        form=form,
        action=save,
        success=success,
        template="records/form.html",
        context=context,
        success_message="Demographics saved.",
    )


@require_POST
@capability_required(C.ADMIT_PATIENT)
def admit(request: HttpRequest, patient_id: int) -> HttpResponse:
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.ENCOUNTERS)
    form = forms.AdmitForm(request.POST)
    success = reverse("records:registration_detail", args=[patient_id])
    return _write(
        request,
        form=form,
        action=lambda d: services.encounter_admit(
            actor=request.user,
            patient_id=patient_id,
            kind=d["kind"],
            department=d["department"],
            attending=d["attending"],
            reason=d["reason"],
        ),
        success=success,
        template="records/form.html",
        context={"title": "Admit", "submit": "Admit", "cancel": success},
        success_message="Admitted.",
    )


@require_POST
@capability_required(C.ADMIT_PATIENT)
def discharge(request: HttpRequest, patient_id: int, encounter_id: int) -> HttpResponse:
    """Close a stay of this patient; another patient's stay is a 404, a closed one a 409 (nothing saved)."""
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.ENCOUNTERS)
    try:
        services.encounter_discharge(actor=request.user, patient_id=patient_id, encounter_id=encounter_id)
    except services.EncounterAlreadyClosed:
        # A second click or two people at once: say so plainly; the stay keeps its first discharge.
        return render_error(
            request, 409, "Already discharged", "This stay was already closed. Reload the patient's page to see it."
        )
    messages.success(request, "Encounter closed.")
    return redirect("records:registration_detail", patient_id=patient_id)


@require_POST
@capability_required(C.ASSIGN_CARE_TEAM)
def assign(request: HttpRequest, patient_id: int) -> HttpResponse:
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.CARE_TEAM)
    form = forms.AssignForm(request.POST)
    success = reverse("records:registration_detail", args=[patient_id])
    return _write(
        request,
        form=form,
        action=lambda d: services.care_assignment_create(
            actor=request.user, staff=d["staff"], patient=patient_id, team_role=d["team_role"]
        ),
        success=success,
        template="records/form.html",
        context={"title": "Assign to the care team", "submit": "Assign", "cancel": success},
        success_message="Care team updated.",
    )


@require_POST
@capability_required(C.ASSIGN_CARE_TEAM)
def unassign(request: HttpRequest, patient_id: int, assignment_id: int) -> HttpResponse:
    """End a care-team assignment of this patient; another patient's (or an ended one) is a 404."""
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.CARE_TEAM)
    services.care_assignment_end(actor=request.user, patient_id=patient_id, assignment_id=assignment_id)
    messages.success(request, "Removed from the care team.")
    return redirect("records:registration_detail", patient_id=patient_id)
