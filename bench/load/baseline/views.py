"""The baseline pages: the same URLs, forms, templates and read models as the real pages, filled from
plaintext mirror rows (models.py) with no policy check, no audit event and no decryption.

Sign-in, sessions, CSRF and the middleware are the real ones on both sides; only what a page reads
and writes differs. The chart fills every section the subject's does (care team to immunizations,
with the same orders and limits); the dashboard builds every panel registered for the role
(``accounts.dashboards.registered_panels``), in the same order, with the same templates and the
same step-up card in place of a record panel while the step-up is stale, each from a baseline
builder (``PANELS``) that selects the same rows as the subject's selector. A panel without a
builder fails the page rather than quietly leaving it out (tests/bench/test_baseline_parity.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Case, Count, Exists, Max, OuterRef, Q, QuerySet, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.dashboards import registered_panels, step_up_panel
from accounts.roles import Capability, ChartAccess, DataCategory, has_capability, policy_for
from accounts.services import step_up_is_fresh
from bench.load.baseline import models as plain
from records import forms, selectors
from records.models import SCHEDULE_HOURS, Encounter, Medication, Observation, Order
from records.permissions import ORDER_KIND_FOR_ROLE, schedule_scope
from records.selectors import results, today
from records.selectors.appointments import _day_bounds
from records.selectors.chart import CHART_ENCOUNTERS, CHART_EVENTS, CHART_ORDERS
from records.terminology import Flag
from records.views.chart import chart_context

PANEL_ROWS = today.PANEL_ROWS
OPEN_ENCOUNTERS = (Encounter.Status.PLANNED, Encounter.Status.IN_PROGRESS)


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


def _in_force(now: datetime.datetime) -> Q:
    """Care-team assignments in force at ``now`` (records.permissions.active_assignments)."""
    return Q(starts_at__lte=now) & (Q(ends_at__isnull=True) | Q(ends_at__gt=now))


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
            for c in plain.PlainCare.objects.filter(_in_force(timezone.now()), patient_id=patient_id).order_by(
                "starts_at"
            )
        ),
        encounters=tuple(
            selectors.EncounterRow(
                e.pk, e.kind, e.status, e.department, e.attending, e.starts_at, e.ends_at, e.reason, e.type_display
            )
            for e in plain.PlainEncounter.objects.filter(patient_id=patient_id).order_by("-starts_at")[
                :CHART_ENCOUNTERS
            ]
        ),
        conditions=tuple(
            selectors.ConditionRow(c.pk, c.display, c.code, c.clinical_status, c.onset_date, c.abatement_date)
            for c in plain.PlainCondition.objects.filter(patient_id=patient_id).order_by("-recorded_at")[
                : selectors.SECTION_LIMIT
            ]
        ),
        allergies=tuple(
            selectors.AllergyRow(a.pk, a.substance, a.reaction, a.severity, a.recorded_at, a.code)
            for a in plain.PlainAllergy.objects.filter(patient_id=patient_id).order_by("-recorded_at")[
                : selectors.SECTION_LIMIT
            ]
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
            for m in plain.PlainMedication.objects.filter(patient_id=patient_id).order_by(
                "status_code", "-prescribed_at"
            )[: selectors.SECTION_LIMIT]
        ),
        administrations=tuple(
            selectors.AdministrationRow(
                a.pk, a.medication_id, a.medication, a.dose, a.note, a.administered_by, a.administered_at
            )
            for a in plain.PlainAdministration.objects.filter(patient_id=patient_id).order_by(
                "-administered_at", "-id"
            )[: selectors.SECTION_LIMIT]
        ),
        observations=tuple(
            _observation(o)
            for o in observations.order_by("-effective_at", "-id")[obs_start : obs_start + obs_page.per_page]
        ),
        observations_page=obs_page,
        vital_trends=selectors.vital_trends([_observation(o) for o in trend_rows]),
        orders=tuple(
            _order(o)
            for o in plain.PlainOrder.objects.filter(patient_id=patient_id).order_by("-ordered_at")[:CHART_ORDERS]
        ),
        notes=tuple(
            selectors.NoteRow(n.pk, n.kind, n.author, n.signed_at, n.text, None, n.order_id)
            for n in notes.order_by("-signed_at", "-id")[notes_start : notes_start + notes_page.per_page]
        ),
        notes_page=notes_page,
        attachments=tuple(
            selectors.AttachmentRow(
                a.pk,
                a.kind,
                a.filename,
                a.content_type,
                a.description,
                a.size,
                a.uploaded_by,
                a.uploaded_at,
                a.order_id,
            )
            for a in plain.PlainAttachment.objects.filter(patient_id=patient_id).order_by("-uploaded_at")[
                : selectors.SECTION_LIMIT
            ]
        ),
        procedures=_events(patient_id, "procedure"),
        immunizations=_events(patient_id, "immunization"),
    )
    return render(request, "records/chart.html", chart_context(request, record))


def _events(patient_id: int, kind: str) -> tuple[selectors.EventRow, ...]:
    found = plain.PlainEvent.objects.filter(patient_id=patient_id, kind=kind).order_by("-at")[:CHART_EVENTS]
    return tuple(selectors.EventRow(e.pk, kind, e.display, e.at) for e in found)


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


def _patients(ids: set[int] | list[int]) -> dict[int, selectors.PatientSummary]:
    return {p.pk: _summary(p) for p in plain.PlainPatient.objects.filter(pk__in=set(ids))}


def _cared_for(user: Any, now: datetime.datetime) -> Q:
    """The patients ``user`` cares for now (care team or attending), as results._cared_for."""
    relation = Q(patient_id__in=plain.PlainCare.objects.filter(_in_force(now), staff_id=user.pk).values("patient_id"))
    relation |= Q(
        patient_id__in=plain.PlainEncounter.objects.filter(
            status_code__in=OPEN_ENCOUNTERS, attending_id=user.pk
        ).values("patient_id")
    )
    return relation


def _order_rows(orders: QuerySet[plain.PlainOrder], limit: int) -> list[selectors.WorklistRow]:
    found = list(orders[:limit])
    patients = _patients({o.patient_id for o in found}) if found else {}
    return [selectors.WorklistRow(_order(o), patients[o.patient_id]) for o in found]


def _critical_results(request: HttpRequest) -> dict[str, Any]:
    user, now = request.user, timezone.now()
    if not has_capability(user, Capability.PLACE_ORDER):
        return {"rows": []}
    candidates = plain.PlainObservation.objects.filter(
        _cared_for(user, now),
        order_id__in=plain.PlainOrder.objects.filter(ordered_by_id=user.pk).values("id"),
        category=Observation.Category.LABORATORY.label,
        effective_at__gte=now - datetime.timedelta(days=results.CRITICAL_DAYS),
    ).order_by("-effective_at", "-id")[: results.CRITICAL_SCAN]
    critical = [o for o in candidates if o.interpretation in Flag.CRITICAL][:PANEL_ROWS]
    patients = _patients({o.patient_id for o in critical}) if critical else {}
    return {"rows": [selectors.CriticalResultRow(patients[o.patient_id], _observation(o)) for o in critical]}


def _new_results(request: HttpRequest) -> dict[str, Any]:
    user, now = request.user, timezone.now()
    rows: list[selectors.WorklistRow] = []
    if has_capability(user, Capability.PLACE_ORDER):
        orders = plain.PlainOrder.objects.filter(
            _cared_for(user, now),
            ordered_by_id=user.pk,
            status=Order.Status.COMPLETED,
            completed_at__gte=now - datetime.timedelta(hours=today.NEW_RESULTS_HOURS),
        ).order_by("-completed_at", "-id")
        rows = _order_rows(orders, PANEL_ROWS)
    return {"rows": rows, "hours": today.NEW_RESULTS_HOURS}


def _pending_orders(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    if not has_capability(user, Capability.PLACE_ORDER):
        return {"rows": [], "total": 0}
    orders = plain.PlainOrder.objects.filter(
        _cared_for(user, timezone.now()), ordered_by_id=user.pk, status__in=Order.OPEN_STATUSES
    ).order_by("ordered_at", "id")
    rows = _order_rows(orders, PANEL_ROWS)
    return {"rows": rows, "total": orders.count() if len(rows) == PANEL_ROWS else len(rows)}


def _my_patients(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    policy = policy_for(user)
    assert policy is not None  # the dashboard checked it
    now = timezone.now()
    relation = Q(pk__in=plain.PlainCare.objects.filter(_in_force(now), staff_id=user.pk).values("patient_id"))
    relation |= Q(
        pk__in=plain.PlainEncounter.objects.filter(status_code__in=OPEN_ENCOUNTERS, attending_id=user.pk).values(
            "patient_id"
        )
    )
    if policy.chart_access == ChartAccess.CARE_TEAM_OR_WARD and user.department_id:
        relation |= Q(
            pk__in=plain.PlainEncounter.objects.filter(
                status_code__in=OPEN_ENCOUNTERS, department_id=user.department_id
            ).values("patient_id")
        )
    mine = plain.PlainPatient.objects.filter(relation)
    page, _ = _page(mine, 1, selectors.LIST_PER_PAGE)
    listed = [_summary(p) for p in mine.order_by("family_name", "given_name", "id")[: selectors.LIST_PER_PAGE]]
    return {"patients": listed[:PANEL_ROWS], "total": page.total}


def _ward_stays(user: Any) -> QuerySet[plain.PlainEncounter] | None:
    policy = policy_for(user)
    if policy is None or policy.chart_access != ChartAccess.CARE_TEAM_OR_WARD or user.department_id is None:
        return None
    return plain.PlainEncounter.objects.filter(
        kind_code=Encounter.Kind.INPATIENT, status_code=Encounter.Status.IN_PROGRESS, department_id=user.department_id
    )


def _ward(request: HttpRequest) -> dict[str, Any]:
    stays = _ward_stays(request.user)
    if stays is None:
        return {"rows": [], "total": 0}
    found = list(stays.order_by("starts_at", "id")[: today.WARD_SCAN])
    patients = _patients({e.patient_id for e in found}) if found else {}
    rows = [today.WardRow(patients[e.patient_id], e.location, e.starts_at) for e in found]
    return {"rows": rows, "total": stays.count() if len(found) == today.WARD_SCAN else len(found)}


def _next_dose(m: plain.PlainMedication, last_given: datetime.datetime | None) -> datetime.datetime | None:
    """today._next_dose on a mirror row."""
    if m.frequency_code == Medication.Frequency.ONCE:
        return m.prescribed_at if last_given is None else None
    hours = SCHEDULE_HOURS.get(m.frequency_code)
    if hours is None:
        return None
    return (last_given or m.prescribed_at) + datetime.timedelta(hours=hours)


def _due_medications(request: HttpRequest) -> dict[str, Any]:
    within = int(today.DUE_WITHIN.total_seconds() // 60)
    stays = _ward_stays(request.user)
    if stays is None or not has_capability(request.user, Capability.ADMINISTER_MEDICATION):
        return {"rows": [], "within_minutes": within}
    ward_patients = list(stays.values_list("patient_id", flat=True)[: today.WARD_SCAN])
    active = list(
        plain.PlainMedication.objects.filter(
            patient_id__in=ward_patients, status_code=Medication.Status.ACTIVE
        ).order_by("id")[: today.MEDICATION_SCAN]
    )
    last_given: dict[int, datetime.datetime] = (
        dict(
            plain.PlainAdministration.objects.filter(medication_id__in=[m.pk for m in active])
            .values("medication_id")
            .annotate(last=Max("administered_at"))
            .values_list("medication_id", "last")
        )
        if active
        else {}
    )
    horizon = timezone.now() + today.DUE_WITHIN
    due = []
    for m in active:
        next_dose = _next_dose(m, last_given.get(m.pk))
        if next_dose is not None and next_dose <= horizon:
            due.append((next_dose, m))
    due.sort(key=lambda pair: (pair[0], pair[1].pk))
    due = due[:PANEL_ROWS]
    patients = _patients({m.patient_id for _, m in due}) if due else {}
    rows = [today.DueMedicationRow(patients[m.patient_id], m.display, m.dosage, m.frequency, at) for at, m in due]
    return {"rows": rows, "within_minutes": within}


def _missing_vitals(request: HttpRequest) -> dict[str, Any]:
    hours = int(today.VITALS_INTERVAL.total_seconds() // 3600)
    stays = _ward_stays(request.user)
    if stays is None or not has_capability(request.user, Capability.RECORD_VITALS):
        return {"rows": [], "total": 0, "hours": hours}
    recent = plain.PlainObservation.objects.filter(
        patient_id=OuterRef("patient_id"),
        category=Observation.Category.VITAL_SIGNS.label,
        effective_at__gte=timezone.now() - today.VITALS_INTERVAL,
    )
    missing = stays.filter(~Exists(recent))
    found = list(missing.order_by("starts_at", "id").values_list("patient_id", "starts_at")[:PANEL_ROWS])
    if not found:
        return {"rows": [], "total": 0, "hours": hours}
    ids = sorted({patient_id for patient_id, _ in found})
    last: dict[int, datetime.datetime] = dict(
        plain.PlainObservation.objects.filter(patient_id__in=ids, category=Observation.Category.VITAL_SIGNS.label)
        .values("patient_id")
        .annotate(last=Max("effective_at"))
        .values_list("patient_id", "last")
    )
    patients = _patients(ids)
    rows = [today.MissingVitalsRow(patients[pid], admitted, last.get(pid)) for pid, admitted in found]
    return {"rows": rows, "total": missing.count() if len(found) == PANEL_ROWS else len(found), "hours": hours}


def _department_orders(user: Any) -> QuerySet[plain.PlainOrder] | None:
    policy = policy_for(user)
    if policy is None or not has_capability(user, Capability.VIEW_WORKLIST) or policy.role not in ORDER_KIND_FOR_ROLE:
        return None
    return plain.PlainOrder.objects.filter(
        kind_code=ORDER_KIND_FOR_ROLE[policy.role], department_id=user.department_id, status__in=Order.OPEN_STATUSES
    )


def _worklist_counts(request: HttpRequest) -> dict[str, Any]:
    orders = _department_orders(request.user)
    if orders is None:
        return {"counts": None}
    counts = dict(orders.values("priority").annotate(n=Count("id")).values_list("priority", "n"))
    return {
        "counts": today.UrgencyCounts(
            stat=counts.get(Order.Priority.STAT, 0),
            urgent=counts.get(Order.Priority.URGENT, 0),
            routine=counts.get(Order.Priority.ROUTINE, 0),
        )
    }


def _worklist(request: HttpRequest) -> dict[str, Any]:
    orders = _department_orders(request.user)
    if orders is None:
        return {"rows": [], "total": 0}
    urgency = Case(When(priority=Order.Priority.STAT, then=0), When(priority=Order.Priority.URGENT, then=1), default=2)
    rows = _order_rows(orders.order_by(urgency, "ordered_at", "id"), selectors.LIST_PER_PAGE)
    return {"rows": rows[:PANEL_ROWS], "total": orders.count()}


def _appointments_today(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    scope = schedule_scope(user)
    if scope is None:
        raise ImproperlyConfigured("a role without a schedule has no appointments panel")
    departments = selectors.schedule_departments(actor=user)
    department_id = departments[0][0] if len(departments) == 1 else None
    day = timezone.localdate()
    start, end = _day_bounds(day)
    appointments = plain.PlainAppointment.objects.filter(starts_at__gte=start, starts_at__lt=end)
    if scope.department_id is not None:
        appointments = appointments.filter(department_id=scope.department_id)
    elif scope.clinician_id is not None:
        appointments = appointments.filter(clinician_id=scope.clinician_id)
    if department_id is not None and scope.clinician_id is None:
        appointments = appointments.filter(department_id=department_id)
    found = list(appointments.order_by("starts_at", "id")[:PANEL_ROWS])
    patients = _patients({a.patient_id for a in found}) if found else {}
    rows = [
        selectors.AppointmentRow(
            a.pk,
            patients[a.patient_id],
            a.department,
            a.clinician,
            a.starts_at,
            a.duration_minutes,
            a.reason,
            a.status,
            a.status_label,
            a.encounter_id,
        )
        for a in found
    ]
    schedule = selectors.Schedule(
        day=day,
        department_id=department_id,
        rows=rows,
        total=appointments.count() if len(found) == PANEL_ROWS else len(found),
        departments=departments,
        own=scope.clinician_id is not None,
    )
    return {"schedule": schedule}


def _arrivals(request: HttpRequest) -> dict[str, Any]:
    scope = schedule_scope(request.user)
    if scope is None or not has_capability(request.user, Capability.BOOK_APPOINTMENT):
        return {"rows": [], "total": 0}
    start, end = today.today_bounds()
    encounters = plain.PlainEncounter.objects.filter(starts_at__gte=start, starts_at__lt=end)
    if scope.department_id is not None:
        encounters = encounters.filter(department_id=scope.department_id)
    found = list(encounters.order_by("-starts_at", "-id")[:PANEL_ROWS])
    patients = _patients({e.patient_id for e in found}) if found else {}
    rows = [today.ArrivalTodayRow(patients[e.patient_id], e.kind, e.department, e.starts_at, e.status) for e in found]
    return {"rows": rows, "total": encounters.count() if len(found) == PANEL_ROWS else len(found)}


def _registration(request: HttpRequest) -> dict[str, Any]:
    return {"form": forms.PatientSearchForm()}


def _break_glass(request: HttpRequest) -> dict[str, Any]:
    now = timezone.now()
    grants = list(
        plain.PlainGrant.objects.filter(
            user_id=request.user.pk, ended_at__isnull=True, granted_at__lte=now, expires_at__gt=now
        ).order_by("expires_at")[: selectors.LIST_PER_PAGE]
    )
    patients = _patients({g.patient_id for g in grants}) if grants else {}
    rows = [
        selectors.ActiveGrantRow(
            selectors.GrantInfo(g.pk, g.patient_id, g.reason, g.reason_label, g.granted_at, g.expires_at),
            patients[g.patient_id],
        )
        for g in grants
    ]
    return {"grants": rows}


# The baseline's builder of each panel the clinical roles' dashboards show (records/dashboard_panels.py),
# by template: the same rows from the mirrors, without the policy's relationship check, audit or decryption.
PANELS: dict[str, Callable[[HttpRequest], dict[str, Any]]] = {
    "records/panels/critical_results.html": _critical_results,
    "records/panels/new_results.html": _new_results,
    "records/panels/my_patients.html": _my_patients,
    "records/panels/pending_orders.html": _pending_orders,
    "records/panels/due_medications.html": _due_medications,
    "records/panels/missing_vitals.html": _missing_vitals,
    "records/panels/ward.html": _ward,
    "records/panels/worklist_counts.html": _worklist_counts,
    "records/panels/worklist.html": _worklist,
    "records/panels/appointments_today.html": _appointments_today,
    "records/panels/arrivals_today.html": _arrivals,
    "records/panels/search.html": _registration,
    "records/panels/break_glass.html": _break_glass,
}


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """The role's dashboard with every panel the subject registers for it, in the same order."""
    policy = policy_for(request.user)
    assert policy is not None  # load accounts all have a role
    fresh = step_up_is_fresh(request)
    panels: list[dict[str, Any]] = []
    for panel in registered_panels(policy.role):
        if panel.template not in PANELS:
            # Fail the page rather than serve a lighter dashboard than the subject's.
            raise ImproperlyConfigured(f"the baseline has no builder for the panel {panel.template}")
        if panel.shows_record and not fresh:
            panels.append(step_up_panel(panel))
        else:
            panels.append({"template": panel.template, "data": PANELS[panel.template](request)})
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
