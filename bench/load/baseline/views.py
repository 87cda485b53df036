"""The baseline pages: the same URLs, forms, templates and read models as the real pages, filled from
plaintext mirror rows (models.py) with no policy check, no audit event and no decryption.

Sign-in, sessions, CSRF and the middleware are the real ones on both sides; only what a page reads
and writes differs. Sections the mirror does not hold (administrations, images, procedures,
immunizations) are empty here; the dashboard builds each role's main panel only (bench/README.md).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.roles import Capability, DataCategory, has_capability, policy_for
from bench.load.baseline import models as plain
from records import forms, selectors
from records.views.chart import chart_context

PANEL_ROWS = 8


def _summary(p: plain.PlainPatient) -> selectors.PatientSummary:
    return selectors.PatientSummary(
        p.pk, p.mrn, p.given_name, p.family_name, p.birth_date, p.sex, p.is_confidential, registered_at=p.registered_at
    )


def _observation(o: plain.PlainObservation) -> selectors.ObservationRow:
    return selectors.ObservationRow(
        o.pk,
        o.category,
        o.display,
        o.value,
        o.unit,
        o.loinc_code,
        o.effective_at,
        o.recorded_by,
        o.order_id,
        interpretation=o.interpretation,
        reference_range=o.reference_range,
    )


def _order(o: plain.PlainOrder) -> selectors.OrderRow:
    return selectors.OrderRow(
        o.pk,
        o.patient_id,
        o.kind,
        o.status,
        o.priority,
        o.priority_label,
        o.description,
        o.code,
        o.reason,
        o.department,
        o.ordered_by,
        o.ordered_at,
        o.completed_at,
    )


def _page(query: QuerySet[Any], number: object, per_page: int) -> tuple[selectors.Page, int]:
    total = query.count()
    page = selectors.Page(int(number) if str(number).isdigit() and int(str(number)) > 0 else 1, per_page, total)
    page = selectors.Page(min(page.number, page.num_pages), per_page, total)
    return page, (page.number - 1) * per_page


@require_GET
def chart(request: HttpRequest, patient_id: int) -> HttpResponse:
    p = get_object_or_404(plain.PlainPatient, pk=patient_id)
    demographics = selectors.Demographics(
        p.pk,
        p.mrn,
        p.given_name,
        p.family_name,
        p.birth_date,
        p.sex,
        p.is_confidential,
        address_line="",
        city="",
        state="",
        postal_code="",
        phone="",
        email="",
        national_id_last4="",
        emergency_contact_name="",
        emergency_contact_phone="",
        deceased_date=None,
    )
    observations = plain.PlainObservation.objects.filter(patient_id=patient_id)
    obs_page, obs_start = _page(observations, request.GET.get("obs_page", 1), selectors.OBSERVATIONS_PER_PAGE)
    notes = plain.PlainNote.objects.filter(patient_id=patient_id)
    notes_page, notes_start = _page(notes, request.GET.get("notes_page", 1), selectors.NOTES_PER_PAGE)
    trend_rows = observations.filter(category="Vital signs").order_by("-effective_at", "-id")[: selectors.TREND_SCAN]
    record = selectors.Chart(
        patient=demographics,
        explanation="care_team",
        categories=frozenset(DataCategory),
        care_team=tuple(
            selectors.CareTeamRow(c.pk, c.staff_name, c.staff_role, c.team_role, c.starts_at)
            for c in plain.PlainCare.objects.filter(patient_id=patient_id).order_by("starts_at")
        ),
        encounters=tuple(
            selectors.EncounterRow(
                e.pk, e.kind, e.status, e.department, e.attending, e.starts_at, e.ends_at, e.reason, e.type_display
            )
            for e in plain.PlainEncounter.objects.filter(patient_id=patient_id).order_by("-starts_at")[:50]
        ),
        conditions=tuple(
            selectors.ConditionRow(c.pk, c.display, c.code, c.clinical_status, c.onset_date, c.abatement_date)
            for c in plain.PlainCondition.objects.filter(patient_id=patient_id).order_by("-recorded_at")[:200]
        ),
        allergies=tuple(
            selectors.AllergyRow(a.pk, a.substance, a.reaction, a.severity, a.recorded_at, a.code)
            for a in plain.PlainAllergy.objects.filter(patient_id=patient_id).order_by("-recorded_at")[:200]
        ),
        medications=tuple(
            selectors.MedicationRow(
                m.pk,
                m.display,
                m.code,
                m.dosage,
                m.status,
                m.prescribed_by,
                m.prescribed_at,
                m.allergy_override_reason,
                m.frequency,
            )
            for m in plain.PlainMedication.objects.filter(patient_id=patient_id).order_by("-prescribed_at")[:200]
        ),
        observations=tuple(
            _observation(o)
            for o in observations.order_by("-effective_at", "-id")[obs_start : obs_start + obs_page.per_page]
        ),
        observations_page=obs_page,
        vital_trends=selectors.vital_trends([_observation(o) for o in trend_rows]),
        orders=tuple(
            _order(o) for o in plain.PlainOrder.objects.filter(patient_id=patient_id).order_by("-ordered_at")[:100]
        ),
        notes=tuple(
            selectors.NoteRow(n.pk, n.kind, n.author, n.signed_at, n.text, None, n.order_id)
            for n in notes.order_by("-signed_at", "-id")[notes_start : notes_start + notes_page.per_page]
        ),
        notes_page=notes_page,
    )
    return render(request, "records/chart.html", chart_context(request, record))


@require_http_methods(["GET", "POST"])
def search(request: HttpRequest) -> HttpResponse:
    posted = request.POST if request.method == "POST" else None
    form = forms.PatientSearchForm(posted, sorts=selectors.SEARCH_SORTS)
    results = None
    status = 200
    if posted is not None:
        if form.is_valid():
            data = form.cleaned_data
            found = plain.PlainPatient.objects.all()
            if data["mrn"]:
                found = found.filter(mrn=data["mrn"].strip().upper())
            else:
                found = found.filter(family_name_lower=data["family_name"].strip().lower())
                if data["given_name"]:
                    found = found.filter(given_name__iexact=data["given_name"].strip())
            page, start = _page(found, data["page"] or 1, selectors.SEARCH_PER_PAGE)
            rows = found.order_by("family_name", "given_name", "mrn")[start : start + page.per_page]
            results = selectors.SearchResults(tuple(selectors.SearchRow(_summary(p), True) for p in rows), page)
        else:
            status = 400
    context = {
        "form": form,
        "results": results,
        "open_url_name": "records:chart"
        if has_capability(request.user, Capability.VIEW_CHART)
        else "records:registration_detail",
        "may_break_glass": False,
        "headers": [],
        "sort": "name",
    }
    return render(request, "records/search.html", context, status=status)


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    policy = policy_for(request.user)
    assert policy is not None
    panels: list[dict[str, Any]] = []
    if has_capability(request.user, Capability.VIEW_PATIENT_LIST):
        mine = plain.PlainPatient.objects.filter(plaincare__staff_id=request.user.pk).distinct()
        patients = [_summary(p) for p in mine.order_by("family_name", "given_name")[:PANEL_ROWS]]
        panels.append(
            {"template": "records/panels/my_patients.html", "data": {"patients": patients, "total": mine.count()}}
        )
    if has_capability(request.user, Capability.VIEW_WORKLIST):
        department = request.user.department.name if request.user.department else ""
        open_orders = plain.PlainOrder.objects.filter(department=department, status__in=("Ordered", "In progress"))
        rows = [
            selectors.WorklistRow(_order(o), _summary(o.patient))
            for o in open_orders.select_related("patient").order_by("ordered_at", "id")[:PANEL_ROWS]
        ]
        panels.append(
            {"template": "records/panels/worklist.html", "data": {"rows": rows, "total": open_orders.count()}}
        )
    if has_capability(request.user, Capability.REGISTER_PATIENT):
        panels.append({"template": "records/panels/search.html", "data": {"form": forms.PatientSearchForm()}})
    context = {"policy": policy, "opens_charts": Capability.VIEW_CHART in policy.capabilities, "panels": panels}
    return render(request, f"accounts/dashboards/{policy.role.value}.html", context)


@require_POST
def vitals_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    form = forms.VitalsForm(request.POST)
    if not form.is_valid():
        return render(request, "records/form.html", {"form": form, "title": "Record vitals"}, status=400)
    taken_at = timezone.now()
    name = request.user.get_full_name() or request.user.get_username()
    plain.PlainObservation.objects.bulk_create(
        plain.PlainObservation(
            patient_id=patient_id,
            category="Vital signs",
            display=display,
            value=str(form.cleaned_data[field]),
            unit=unit,
            loinc_code=loinc,
            effective_at=taken_at,
            recorded_by=name,
            interpretation="",
            reference_range="",
        )
        for field, (loinc, display, unit) in forms.VitalsForm.FIELDS.items()
        if form.cleaned_data.get(field) is not None
    )
    messages.success(request, "Vitals recorded.")
    return redirect(reverse("records:chart", args=[patient_id]))


@require_POST
def order_result(request: HttpRequest, order_id: int) -> HttpResponse:
    order = get_object_or_404(plain.PlainOrder, pk=order_id)
    form = forms.ResultForm(request.POST)
    if not form.is_valid():
        return render(request, "records/form.html", {"form": form, "title": "Enter a result"}, status=400)
    data = form.cleaned_data
    plain.PlainObservation.objects.create(
        patient_id=order.patient_id,
        category="Laboratory",
        display=data["display"],
        value=data["value"],
        unit=data["unit"],
        loinc_code=data["loinc_code"],
        effective_at=timezone.now(),
        recorded_by=request.user.get_full_name() or request.user.get_username(),
        order_id=order.pk,
        interpretation="",
        reference_range="",
    )
    messages.success(request, "Result saved.")
    return redirect(reverse("records:order_detail", args=[order_id]))
