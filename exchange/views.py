"""The chart's "Download FHIR record" action: a patient's record as a FHIR R4 Bundle, for a recipient.

GET shows the form (purpose, recipient) after the same policy check as the export, reading nothing
of the record; POST reads the record through the audited path (access and disclosure events first,
records/selectors/export.py), builds and validates the bundle (exchange/fhir/export.py) and answers
with it as an attachment. The file name carries a random token, never the patient's name or MRN;
nothing of the record reaches the URL, the logs or the cache (``Cache-Control: no-store``).
"""

from __future__ import annotations

import logging
import secrets

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.decorators import capability_required, step_up_required
from accounts.roles import Capability
from exchange.fhir.export import ExportInvalid, dumps, export_patient
from healthcrypt.views import render_error
from records.selectors import AccessRefused
from records.selectors.export import EXPORT_PURPOSES, RECIPIENT_MAX_LENGTH, export_access

logger = logging.getLogger(__name__)


class ExportForm(forms.Form):
    purpose = forms.ChoiceField(choices=EXPORT_PURPOSES, label="Purpose of the disclosure")
    recipient = forms.CharField(
        max_length=RECIPIENT_MAX_LENGTH,
        label="Recipient",
        help_text="Who receives the record: a hospital, a clinician, the patient. Listed in the accounting of disclosures.",
    )


def _form_page(request: HttpRequest, patient_id: int, form: ExportForm, *, status: int = 200) -> HttpResponse:
    context = {
        "title": "Download FHIR record",
        "form": form,
        "action": reverse("exchange:export_record", args=[patient_id]),
        "submit": "Download FHIR record",
        "cancel": reverse("records:chart", args=[patient_id]),
    }
    return render(request, "records/form.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
@capability_required(Capability.EXPORT_RECORD)
@step_up_required
def export_record(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The form (GET), or the record as a FHIR R4 JSON attachment (POST); 403/404 as the chart answers."""
    decision = export_access(request.user, patient_id)
    if not decision.allowed:
        raise AccessRefused(decision)
    if request.method != "POST":
        return _form_page(request, patient_id, ExportForm())
    form = ExportForm(request.POST)
    if not form.is_valid():
        return _form_page(request, patient_id, form, status=400)
    try:
        bundle = export_patient(
            actor=request.user,
            patient_id=patient_id,
            purpose=form.cleaned_data["purpose"],
            recipient=form.cleaned_data["recipient"],
        )
    except ExportInvalid as error:
        # Nothing was disclosed (the transaction is undone). The paths only, never a value.
        logger.error("FHIR export refused: %s", error)
        return render_error(
            request,
            422,
            "Export not possible",
            "A value of this record does not fit FHIR R4, so nothing was exported or recorded. "
            "The problem has been logged for the team.",
        )
    response = HttpResponse(dumps(bundle), content_type="application/fhir+json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="record-{secrets.token_hex(8)}.fhir.json"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    logger.info("FHIR export: %d resources disclosed (actor=%s)", len(bundle["entry"]), request.user.pk)
    return response
