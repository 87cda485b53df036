"""Clinical workflows of each role. Thin: form -> capability check -> selector or service -> render.

Views never query clinical models: reads go through records/selectors.py (audited), writes through
records/services.py. AccessRefused, RecordNotFound and AccessNotRecorded raised there become 403/404/503
pages in records/middleware.py. Views that *show* clinical data carry ``@step_up_required``; views that
only add data do not.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import capability_required, step_up_required
from accounts.roles import Capability, DataCategory, has_capability
from healthcrypt.crypto import DecryptionError
from records import files, forms, selectors, services

logger = logging.getLogger(__name__)

C = Capability


def _form_error_response(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """Re-show a form with its errors; bad input is a 400, never a 500, and nothing is saved."""
    return render(request, template, context, status=400)


def _apply_validation_error(form: Any, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field_name, errors in error.error_dict.items():
            target = field_name if field_name in form.fields else None
            for item in errors:
                form.add_error(target, item)
    else:
        for message in error.messages:
            form.add_error(None, message)


def _write(
    request: HttpRequest,
    *,
    form: Any,
    action: Callable[[dict[str, Any]], Any],
    success: str,
    template: str,
    context: dict[str, Any],
    success_message: str,
) -> HttpResponse:
    """The POST half of every data-entry view."""
    if form.is_valid():
        try:
            action(form.cleaned_data)
        except ValidationError as error:
            _apply_validation_error(form, error)
        else:
            messages.success(request, success_message)
            return redirect(success)
    return _form_error_response(request, template, {**context, "form": form})


# --- Lists and search -----------------------------------------------------------------------------


@require_GET
@capability_required(C.VIEW_PATIENT_LIST)
def my_patients(request: HttpRequest) -> HttpResponse:
    patients, page = selectors.my_patients(actor=request.user, page=request.GET.get("page"))
    context = {
        "patients": patients,
        "page": page,
        "title": "My patients",
        "open_url_name": "records:chart",
        "open_label": "Open chart",
    }
    return render(request, "records/patient_list.html", context)


@require_GET
@capability_required(C.SEARCH_PATIENTS)
def search(request: HttpRequest) -> HttpResponse:
    form = forms.SearchForm(request.GET or None)
    results = None
    status = 200
    if request.GET:
        if form.is_valid():
            results = selectors.patient_search(
                actor=request.user,
                mrn=form.cleaned_data["mrn"],
                family_name=form.cleaned_data["family_name"],
                birth_date=form.cleaned_data["birth_date"],
            )
        else:
            status = 400
    open_url_name = "records:chart" if has_capability(request.user, C.VIEW_CHART) else "records:registration_detail"
    return render(
        request,
        "records/search.html",
        {"form": form, "results": results, "open_url_name": open_url_name},
        status=status,
    )


@require_GET
@capability_required(C.REGISTER_PATIENT)
def registrations(request: HttpRequest) -> HttpResponse:
    patients, page = selectors.registration_list(actor=request.user, page=request.GET.get("page"))
    context = {
        "patients": patients,
        "page": page,
        "title": "Recent registrations",
        "open_url_name": "records:registration_detail",
    }
    return render(request, "records/patient_list.html", context)


# --- Registration (front desk) --------------------------------------------------------------------


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
    }
    return render(request, "records/registration_detail.html", context)


@require_http_methods(["GET", "POST"])
@capability_required(C.EDIT_DEMOGRAPHICS)
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
    services.encounter_discharge(actor=request.user, encounter_id=encounter_id)
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
    services.care_assignment_end(actor=request.user, assignment_id=assignment_id)
    messages.success(request, "Removed from the care team.")
    return redirect("records:registration_detail", patient_id=patient_id)


# --- The chart ------------------------------------------------------------------------------------


@require_GET
@capability_required(C.VIEW_CHART)
@step_up_required
def chart(request: HttpRequest, patient_id: int) -> HttpResponse:
    record = selectors.chart_for(
        actor=request.user,
        patient_id=patient_id,
        observations_page=request.GET.get("obs_page", 1),
        notes_page=request.GET.get("notes_page", 1),
    )
    return render(request, "records/chart.html", chart_context(request, record))


def chart_context(request: HttpRequest, record: selectors.Chart) -> dict[str, Any]:
    """Everything the chart template needs besides the record: empty forms and what the user may do."""
    return {
        "chart": record,
        "note_form": forms.NoteForm(),
        "vitals_form": forms.VitalsForm(),
        "order_form": forms.OrderForm(),
        "prescription_form": forms.PrescriptionForm(),
        "condition_form": forms.ConditionForm(),
        "allergy_form": forms.AllergyForm(),
        "administer_form": forms.AdministerForm(),
        "can": _abilities(request),
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
    )


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
        lambda d: services.note_amend(actor=request.user, note_id=note_id, text=d["text"]),
        "Amend a note",
        "Amendment signed.",
        category=DataCategory.NOTES,
    )


@require_POST
@capability_required(C.RECORD_VITALS)
def vitals_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    def save(data: dict[str, Any]) -> None:
        for name, (loinc, display, unit) in forms.VitalsForm.FIELDS.items():
            if data.get(name) is not None:
                services.observation_record(
                    actor=request.user,
                    patient_id=patient_id,
                    category="vital-signs",
                    display=display,
                    value=str(data[name]),
                    unit=unit,
                    loinc_code=loinc,
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
    services.order_cancel(actor=request.user, order_id=order_id)
    messages.success(request, "Order cancelled.")
    return redirect("records:chart", patient_id=patient_id)


@require_POST
@capability_required(C.PRESCRIBE)
def prescription_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    return _chart_write(
        request,
        patient_id,
        forms.PrescriptionForm(request.POST),
        lambda d: services.medication_prescribe(
            actor=request.user, patient_id=patient_id, display=d["display"], dosage=d["dosage"], code=d["code"]
        ),
        "Prescribe",
        "Prescription saved.",
        category=DataCategory.MEDICATIONS,
    )


@require_POST
@capability_required(C.ADMINISTER_MEDICATION)
def administer(request: HttpRequest, patient_id: int, medication_id: int) -> HttpResponse:
    return _chart_write(
        request,
        patient_id,
        forms.AdministerForm(request.POST),
        lambda d: services.medication_administer(
            actor=request.user, medication_id=medication_id, dose=d["dose"], note=d["note"]
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
            substance=d["substance"],
            reaction=d["reaction"],
            severity=d["severity"],
        ),
        "Record an allergy",
        "Allergy recorded.",
        category=DataCategory.ALLERGIES,
    )


# --- Radiology and laboratory ---------------------------------------------------------------------


@require_GET
@capability_required(C.VIEW_WORKLIST)
def worklist(request: HttpRequest) -> HttpResponse:
    rows, page = selectors.worklist(actor=request.user, page=request.GET.get("page"))
    return render(request, "records/worklist.html", {"rows": rows, "page": page})


@require_GET
@capability_required(C.VIEW_WORKLIST)
@step_up_required
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    order, record = selectors.order_for_worklist(actor=request.user, order_id=order_id)
    context = {
        "order": order,
        "chart": record,
        "result_form": forms.ResultForm(),
        "upload_form": forms.UploadForm(max_bytes=settings.ATTACHMENT_MAX_BYTES),
        "report_form": forms.NoteForm(initial={"kind": "radiology" if order.kind == "Radiology" else "lab"}),
        "can": _abilities(request),
    }
    return render(request, "records/order_detail.html", context)


def _order_write(
    request: HttpRequest, order_id: int, form: Any, action: Callable[[dict[str, Any]], Any], title: str, message: str
) -> HttpResponse:
    success = reverse("records:order_detail", args=[order_id])
    return _write(
        request,
        form=form,
        action=action,
        success=success,
        template="records/form.html",
        context={"title": title, "submit": "Save", "cancel": success},
        success_message=message,
    )


@require_POST
@capability_required(C.ENTER_RESULT)
def order_result(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.worklist_order(actor=request.user, order_id=order_id)
    return _order_write(
        request,
        order_id,
        forms.ResultForm(request.POST),
        lambda d: services.observation_record(
            actor=request.user,
            patient_id=order.patient_id,
            category="laboratory" if order.kind == "lab" else "imaging",
            display=d["display"],
            value=d["value"],
            unit=d["unit"],
            loinc_code=d["loinc_code"],
            order_id=order_id,
        ),
        "Enter a result",
        "Result saved.",
    )


@require_POST
@capability_required(C.WRITE_NOTE)
def order_report(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.worklist_order(actor=request.user, order_id=order_id)
    return _order_write(
        request,
        order_id,
        forms.NoteForm(request.POST),
        lambda d: services.note_write(
            actor=request.user, patient_id=order.patient_id, kind=d["kind"], text=d["text"], order_id=order_id
        ),
        "Write a report",
        "Report signed.",
    )


@require_POST
@capability_required(C.UPLOAD_IMAGE)
def order_upload(request: HttpRequest, order_id: int) -> HttpResponse:
    selectors.worklist_order(actor=request.user, order_id=order_id)
    form = forms.UploadForm(request.POST, request.FILES, max_bytes=settings.ATTACHMENT_MAX_BYTES)

    def save(data: dict[str, Any]) -> None:
        upload = data["file"]
        try:
            services.attachment_upload(
                actor=request.user,
                order_id=order_id,
                source=upload,
                filename=upload.name[:255],
                content_type=data["content_type"],
                description=data["description"],
                max_bytes=settings.ATTACHMENT_MAX_BYTES,
            )
        except files.FileTooLarge as error:
            raise ValidationError({"file": str(error)}) from None

    return _order_write(request, order_id, form, save, "Upload an image", "Image uploaded and encrypted.")


@require_POST
@capability_required(C.COMPLETE_ORDER)
def order_complete(request: HttpRequest, order_id: int) -> HttpResponse:
    services.order_complete(actor=request.user, order_id=order_id)
    messages.success(request, "Order completed; it has left the worklist.")
    return redirect("records:worklist")


def _verified(chunks: Iterator[bytes], sha256: str, attachment_id: int) -> Iterator[bytes]:
    """Pass chunks through, and abort the transfer if the whole file does not match its recorded hash."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        logger.error("Attachment %s does not match its recorded SHA-256; transfer aborted", attachment_id)
        raise DecryptionError(f"Attachment {attachment_id} failed its integrity check.")


@require_GET
@step_up_required
def attachment_download(request: HttpRequest, attachment_id: int) -> HttpResponse:
    """Stream the decrypted file; the download is recorded before the first byte is decrypted."""
    attachment = selectors.attachment_for_download(actor=request.user, attachment_id=attachment_id)
    response = StreamingHttpResponse(
        files.open_decrypted(attachment.storage_name, row_uid=attachment.row_uid), content_type=attachment.content_type
    )
    response["Content-Disposition"] = f'attachment; filename="attachment-{attachment.pk}"'
    response["Content-Length"] = str(attachment.size)
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- The patient's own record ---------------------------------------------------------------------


@require_GET
@capability_required(C.VIEW_OWN_RECORD)
@step_up_required
def my_record(request: HttpRequest) -> HttpResponse:
    record = selectors.patient_own_summary(actor=request.user)
    return render(request, "records/my_record.html", {"chart": record})
