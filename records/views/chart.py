"""The chart (physicians and nurses) and what they add to it, and the patient's own record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import capability_required, step_up_required
from accounts.roles import Capability, DataCategory, has_capability
from accounts.services import step_up_is_fresh
from records import forms, selectors, services
from records.views.base import _write

C = Capability
D = DataCategory

# What the chart page shows: every section but the care team (which the registration page lists).
# Asking for no more than the page shows keeps a query off each view, and the access event true.
CHART_CATEGORIES = frozenset(DataCategory) - {DataCategory.CARE_TEAM}


@require_GET
@capability_required(C.VIEW_CHART)
@step_up_required
def chart(request: HttpRequest, patient_id: int) -> HttpResponse:
    record = selectors.chart_for(
        actor=request.user,
        patient_id=patient_id,
        categories=CHART_CATEGORIES,
        observations_page=request.GET.get("obs_page", 1),
        notes_page=request.GET.get("notes_page", 1),
        trends=True,
    )
    return render(request, "records/chart.html", chart_context(request, record))


@dataclass(frozen=True)
class ChartSection:
    """A section of the chart page: its anchor (``#section-<key>``) and its name in the section nav."""

    key: str
    label: str

    @property
    def anchor(self) -> str:
        return f"section-{self.key}"


def chart_sections(record: selectors.Chart, can: dict[str, bool]) -> list[ChartSection]:
    """The sections the chart page shows, in page order; the section nav lists the same ones.

    A section someone works in is there as soon as they may see or add to it (its form is in it); the
    others only when they have something to show.
    """
    wanted = [
        ("observations", "Observations", record.shows(D.OBSERVATIONS) or can[C.RECORD_VITALS]),
        ("medications", "Medications", record.shows(D.MEDICATIONS) or can[C.PRESCRIBE]),
        (
            "problems",
            "Problems and allergies",
            record.shows(D.ALLERGIES) or record.shows(D.CONDITIONS) or can[C.RECORD_DIAGNOSIS],
        ),
        ("orders", "Orders", record.shows(D.ORDERS) or can[C.PLACE_ORDER]),
        ("notes", "Notes", record.shows(D.NOTES) or can[C.WRITE_NOTE]),
        ("images", "Images", bool(record.attachments)),
        ("visits", "Stays and visits", bool(record.encounters)),
        ("history", "Procedures and immunizations", bool(record.procedures or record.immunizations)),
    ]
    return [ChartSection(key, label) for key, label, shown in wanted if shown]


# The entry forms of the chart page, each with the capability that may use it. A form is built (and
# rendered) only for a role that may use it: a chart GET no longer builds every form for everyone
# (issue 11). The order form has its own page (``order_form``): its department list is a query, and
# the chart is read far more often than an order is placed.
CHART_FORMS: tuple[tuple[str, Capability, Callable[[], Any]], ...] = (
    ("vitals_form", C.RECORD_VITALS, forms.VitalsForm),
    ("prescription_form", C.PRESCRIBE, lambda: forms.PrescriptionForm(offer_override=False)),
    ("allergy_form", C.RECORD_ALLERGY, forms.AllergyForm),
    ("condition_form", C.RECORD_DIAGNOSIS, forms.ConditionForm),
    ("note_form", C.WRITE_NOTE, forms.NoteForm),
)


def chart_context(request: HttpRequest, record: selectors.Chart) -> dict[str, Any]:
    """Everything the chart template needs besides the record: the entry forms the user may use, and
    what the user may do."""
    can = _abilities(request)
    sections = chart_sections(record, can)
    return {
        "chart": record,
        "sections": sections,
        "shown": {s.key for s in sections},
        "sees": {str(c) for c in record.categories},
        # The observations of this page as tables, and the trend lines' data (json_script), both from
        # the rows the audited read returned: no other read of the record.
        "observation_table": selectors.vitals_table(record.observations),
        "trend_data": selectors.trend_data(record.vital_trends),
        **{name: make() for name, capability, make in CHART_FORMS if can[capability]},
        "can": can,
    }


def _abilities(request: HttpRequest) -> dict[str, bool]:
    return {cap.value: has_capability(request.user, cap) for cap in Capability}


def _chart_write(
    request: HttpRequest,
    patient_id: int,
    form: Any,
    action: Callable[[dict[str, Any]], Any],
    title: str,
    message: str,
    *,
    category: DataCategory,
    on_error: Callable[[], dict[str, Any]] | None = None,
    banner_categories: tuple[DataCategory, ...] = (),
) -> HttpResponse:
    # Relationship first: a patient one does not treat is a 404 whatever was posted.
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=category)
    success = reverse("records:chart", args=[patient_id])
    return _write(
        request,
        form=form,
        action=action,
        success=success,
        template="records/form.html",
        context={"title": title, "submit": "Save", "cancel": success},
        success_message=message,
        error_context=lambda: {
            **patient_banner(request, patient_id, banner_categories),
            **(on_error() if on_error is not None else {}),
        },
    )


def patient_banner(request: HttpRequest, patient_id: int, categories: tuple[DataCategory, ...] = ()) -> dict[str, Any]:
    """The patient banner of a rejected form (a page about a patient always names them), read and
    audited through the chart selector, with the allergies where the role may see them (the banner
    shows them); ``categories`` adds sections the form needs.

    Shown only within a fresh step-up, like the chart itself; otherwise the form comes back without it.
    """
    if not step_up_is_fresh(request):
        return {}
    wanted = (DataCategory.DEMOGRAPHICS, DataCategory.ALLERGIES, *categories)
    return {"chart": selectors.chart_for(actor=request.user, patient_id=patient_id, categories=wanted)}


@require_POST
@capability_required(C.WRITE_NOTE)
def note_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    return _chart_write(
        request,
        patient_id,
        forms.NoteForm(request.POST),
        lambda d: services.note_write(actor=request.user, patient_id=patient_id, kind=d["kind"], text=d["text"]),
        "Write a note",
        "Note signed.",
        category=DataCategory.NOTES,
    )


@require_POST
@capability_required(C.WRITE_NOTE)
def note_amend(request: HttpRequest, patient_id: int, note_id: int) -> HttpResponse:
    return _chart_write(
        request,
        patient_id,
        forms.AmendForm(request.POST),
        lambda d: services.note_amend(actor=request.user, patient_id=patient_id, note_id=note_id, text=d["text"]),
        "Amend a note",
        "Amendment signed.",
        category=DataCategory.NOTES,
    )


@require_POST
@capability_required(C.RECORD_VITALS)
def vitals_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    def save(data: dict[str, Any]) -> None:
        # One set of vitals, one time: all of it or none of it (vitals_record is one transaction).
        services.vitals_record(
            actor=request.user,
            patient_id=patient_id,
            readings=[
                (loinc, display, unit, str(data[name]))
                for name, (loinc, display, unit) in forms.VitalsForm.FIELDS.items()
                if data.get(name) is not None
            ],
        )

    return _chart_write(
        request,
        patient_id,
        forms.VitalsForm(request.POST),
        save,
        "Record vitals",
        "Vitals recorded.",
        category=DataCategory.OBSERVATIONS,
    )


@require_GET
@capability_required(C.PLACE_ORDER)
@step_up_required
def order_form(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The order form on its own page, under the patient banner; it posts to ``order_new``.

    Not on the chart itself: its department list costs a query, and a chart is opened far more
    often than an order is placed (issue 11).
    """
    # Relationship and section first, as for the post: a patient one may not order for is a 404.
    selectors.check_write_access(actor=request.user, patient_id=patient_id, category=DataCategory.ORDERS)
    chart_url = reverse("records:chart", args=[patient_id])
    context = {
        "title": "Place an order",
        "submit": "Place order",
        "cancel": f"{chart_url}#section-orders",
        "action": reverse("records:order_new", args=[patient_id]),
        "form": forms.OrderForm(),
        **patient_banner(request, patient_id),
    }
    return render(request, "records/form.html", context)


@require_POST
@capability_required(C.PLACE_ORDER)
def order_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    return _chart_write(
        request,
        patient_id,
        forms.OrderForm(request.POST),
        lambda d: services.order_place(
            actor=request.user,
            patient_id=patient_id,
            kind=d["kind"],
            department=d["department"],
            description=d["description"],
            code=d["code"],
            reason=d["reason"],
            priority=d["priority"],
        ),
        "Place an order",
        "Order placed.",
        category=DataCategory.ORDERS,
    )


@require_POST
@capability_required(C.PLACE_ORDER)
def order_cancel(request: HttpRequest, patient_id: int, order_id: int) -> HttpResponse:
    services.order_cancel(actor=request.user, patient_id=patient_id, order_id=order_id)
    messages.success(request, "Order cancelled.")
    return redirect("records:chart", patient_id=patient_id)


@require_POST
@capability_required(C.PRESCRIBE)
def prescription_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    form = forms.PrescriptionForm(request.POST)
    # Filled by the service's allergy check; the rejected form lists the conflicting allergies.
    conflicts: dict[int, str] = {}

    def prescribe(d: dict[str, Any]) -> None:
        try:
            services.medication_prescribe(
                actor=request.user,
                patient_id=patient_id,
                display=d["display"],
                dosage=d["dosage"],
                code=d["code"],
                allergy_override_reason=d["allergy_override_reason"],
                frequency=d["frequency"],
            )
        except services.AllergyWarning as warning:
            conflicts.update({c.allergy_id: c.why for c in warning.conflicts})
            raise

    def on_error() -> dict[str, Any]:
        # The override is offered once a warning was shown (or is being answered), not before.
        if not conflicts and not request.POST.get("allergy_override"):
            form.hide_override()
        return {"allergy_conflicts": conflicts}

    return _chart_write(
        request,
        patient_id,
        form,
        prescribe,
        "Prescribe",
        "Prescription saved.",
        category=DataCategory.MEDICATIONS,
        on_error=on_error,
        banner_categories=(DataCategory.ALLERGIES,),
    )


@require_POST
@capability_required(C.ADMINISTER_MEDICATION)
def administer(request: HttpRequest, patient_id: int, medication_id: int) -> HttpResponse:
    return _chart_write(
        request,
        patient_id,
        forms.AdministerForm(request.POST),
        lambda d: services.medication_administer(
            actor=request.user, patient_id=patient_id, medication_id=medication_id, dose=d["dose"], note=d["note"]
        ),
        "Record a dose given",
        "Dose recorded.",
        category=DataCategory.MEDICATIONS,
    )


@require_POST
@capability_required(C.RECORD_DIAGNOSIS)
def condition_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    return _chart_write(
        request,
        patient_id,
        forms.ConditionForm(request.POST),
        lambda d: services.condition_record(
            actor=request.user, patient_id=patient_id, display=d["display"], code=d["code"], onset_date=d["onset_date"]
        ),
        "Record a diagnosis",
        "Diagnosis recorded.",
        category=DataCategory.CONDITIONS,
    )


@require_POST
@capability_required(C.RECORD_ALLERGY)
def allergy_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    return _chart_write(
        request,
        patient_id,
        forms.AllergyForm(request.POST),
        lambda d: services.allergy_record(
            actor=request.user,
            patient_id=patient_id,
            code=d["code"],
            substance=d["substance"],
            reaction=d["reaction"],
            severity=d["severity"],
        ),
        "Record an allergy",
        "Allergy recorded.",
        category=DataCategory.ALLERGIES,
        banner_categories=(DataCategory.ALLERGIES,),
    )


@require_GET
@capability_required(C.VIEW_OWN_RECORD)
@step_up_required
def my_record(request: HttpRequest) -> HttpResponse:
    record = selectors.patient_own_summary(actor=request.user)
    return render(request, "records/my_record.html", {"chart": record})
