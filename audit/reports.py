"""Compliance reports on the access trail, and the audit of the audit trail itself.

Two reports, both over ``AccessEvent`` and a period of whole days:

- per patient: every access to one patient (chosen by id, or by MRN through the blind index), and
  the break-the-glass grants for them in the period (who, when, reason code, expiry; never the
  free-text explanation);
- per user: everything one member of staff opened.

Each is a page of an admin view and a streamed CSV (audit/exports.py). Every view and every export
of the trail writes an ``audit_trail`` access event *before* anything is shown, and a failure to
write it propagates, so nothing is shown unrecorded (fail closed).

Patient identifiers typed by a compliance officer (an MRN) never reach a URL, a log line or an
event: the MRN form is posted, resolved to the patient id, and the report is addressed by that id.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.services import step_up_is_fresh
from audit.exports import csv_response, queryset_rows
from audit.models import AccessEvent
from audit.permissions import can_export_audit, can_view_audit
from audit.services import access_event_record
from records.crypto import mrn_index
from records.models import BreakGlassGrant, Patient

AUDIT_TRAIL_CATEGORY = "audit_trail"
COMPLIANCE_PURPOSE = "compliance"
REPORT_PAGE_SIZE = 100
DEFAULT_PERIOD_DAYS = 30
# The longest text that could be an MRN once spaces are counted; MRNs themselves are at most 32.
MRN_MAX_LENGTH = 64

REPORT_CSV_COLUMNS = (
    "id",
    "at",
    "actor_id",
    "actor_username",
    "actor_role",
    "patient_id",
    "category",
    "action",
    "purpose",
    "explanation",
    "detail",
    "ip",
    "user_agent",
    "request_id",
    "session_ref",
)


def record_trail_access(
    request: HttpRequest,
    *,
    action: str,
    detail: Mapping[str, Any],
    patient_ids: Iterable[int | None] = (None,),
) -> list[AccessEvent]:
    """Write the audit-of-the-audit event for a view or an export of the trail.

    Not wrapped in any ``try``: if the event cannot be written the exception propagates and the page
    or the file is not served (STYLE.md, "fail closed"). ``detail`` holds the filters, counts and
    ids used, never a search term (audit/admin.py ``audit_detail``). Returns the events written.
    """
    return access_event_record(
        actor=request.user,
        patient_ids=list(patient_ids),
        categories=[AUDIT_TRAIL_CATEGORY],
        action=action,
        purpose=COMPLIANCE_PURPOSE,
        detail=dict(detail),
    )


def day_bounds(
    date_from: datetime.date | None, date_to: datetime.date | None
) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """``[start of date_from, start of the day after date_to)`` in the current time zone; both ends optional."""
    start = timezone.make_aware(datetime.datetime.combine(date_from, datetime.time.min)) if date_from else None
    end = (
        timezone.make_aware(datetime.datetime.combine(date_to + datetime.timedelta(days=1), datetime.time.min))
        if date_to
        else None
    )
    return start, end


# --- MRN lookup -------------------------------------------------------------------------------------


def looks_like_mrn(term: str) -> bool:
    """True when ``term`` could be an MRN: letters, digits, hyphens (and stray spaces), not too long."""
    compact = "".join(term.split()).replace("-", "")
    return 0 < len(term) <= MRN_MAX_LENGTH and compact.isalnum()


def patient_ids_for_mrn(term: str) -> list[int]:
    """Ids of the patients whose MRN is ``term``, through the blind index (nothing is decrypted).

    The index already ignores case and outer spaces; the term is also tried with inner spaces
    removed, as someone copying an MRN from paper may type "HC 100 001" for "HC100001".
    """
    term = term.strip()
    if not looks_like_mrn(term):
        return []
    indexes = {mrn_index(term), mrn_index("".join(term.split()))}
    return list(Patient.objects.filter(mrn_index__in=indexes).order_by("id").values_list("id", flat=True))


# --- Forms ------------------------------------------------------------------------------------------


class _PeriodForm(forms.Form):
    date_from = forms.DateField(label="From", widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}))
    date_to = forms.DateField(label="To (inclusive)", widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The period ends before it starts.")
        return cleaned


def _default_period() -> dict[str, datetime.date]:
    today = timezone.localdate()
    return {"date_from": today - datetime.timedelta(days=DEFAULT_PERIOD_DAYS), "date_to": today}


class PatientReportForm(_PeriodForm):
    """Patient by id or by MRN (exactly one), and a period."""

    patient_id = forms.IntegerField(label="Patient id", min_value=1, required=False)
    mrn = forms.CharField(
        label="or MRN",
        max_length=MRN_MAX_LENGTH,
        required=False,
        help_text="Looked up through the blind index; case and spaces do not matter. Never stored.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    field_order = ("patient_id", "mrn", "date_from", "date_to")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        patient_id, mrn = cleaned.get("patient_id"), (cleaned.get("mrn") or "").strip()
        if patient_id and mrn:
            raise forms.ValidationError("Give a patient id or an MRN, not both.")
        if mrn:
            ids = patient_ids_for_mrn(mrn)
            if not ids:
                # The message does not repeat the MRN.
                self.add_error("mrn", "No patient has this MRN.")
            else:
                cleaned["patient_id"] = ids[0]
            cleaned["mrn"] = ""
        elif not patient_id and "patient_id" not in self.errors:
            raise forms.ValidationError("Give a patient id or an MRN.")
        return cleaned


class UserReportForm(_PeriodForm):
    """A username and a period."""

    username = forms.CharField(label="Username", max_length=150)
    field_order = ("username", "date_from", "date_to")


# --- Queries ----------------------------------------------------------------------------------------


def _in_period(queryset: QuerySet[AccessEvent], date_from: datetime.date, date_to: datetime.date) -> QuerySet[Any]:
    start, end = day_bounds(date_from, date_to)
    return queryset.filter(at__gte=start, at__lt=end).order_by("-at", "-id")


def patient_report_events(
    *, patient_id: int, date_from: datetime.date, date_to: datetime.date
) -> QuerySet[AccessEvent]:
    """Every access event about ``patient_id`` in the period, newest first (index patient_id, at)."""
    return _in_period(AccessEvent.objects.filter(patient_id=patient_id), date_from, date_to)


@dataclass(frozen=True)
class GrantRow:
    """A break-the-glass grant as the report shows it: metadata only, never the free-text explanation."""

    id: int
    user_id: int
    username: str
    role: str
    reason: str
    granted_at: datetime.datetime
    expires_at: datetime.datetime
    ended_at: datetime.datetime | None


def patient_report_grants(*, patient_id: int, date_from: datetime.date, date_to: datetime.date) -> list[GrantRow]:
    """The emergency grants for ``patient_id`` made in the period, newest first (one query)."""
    start, end = day_bounds(date_from, date_to)
    grants = (
        BreakGlassGrant.objects.filter(patient_id=patient_id, granted_at__gte=start, granted_at__lt=end)
        .select_related("user")
        .only("id", "user__username", "user__role", "reason", "granted_at", "expires_at", "ended_at")
        .order_by("-granted_at", "-id")
    )
    return [
        GrantRow(g.pk, g.user_id, g.user.username, g.user.role, g.reason, g.granted_at, g.expires_at, g.ended_at)
        for g in grants
    ]


@dataclass(frozen=True)
class Subject:
    """The person a per-user report is about: an account if one has the username, else the name only."""

    username: str
    user_id: int | None


def user_report_subject(username: str) -> Subject:
    """Resolve ``username`` to an account; events of a renamed account still follow its id."""
    user_id = get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
    return Subject(username=username, user_id=user_id)


def user_report_events(*, subject: Subject, date_from: datetime.date, date_to: datetime.date) -> QuerySet[AccessEvent]:
    """Every access event by ``subject`` in the period, newest first (index actor_id, at)."""
    if subject.user_id is not None:
        events = AccessEvent.objects.filter(actor_id=subject.user_id)
    else:
        # No such account (any more): fall back on the name recorded at the time.
        events = AccessEvent.objects.filter(actor_username=subject.username)
    return _in_period(events, date_from, date_to)


# --- Views ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What differs between the two reports."""

    kind: str  # "patient" or "user"
    title: str
    url_name: str
    form_class: type[_PeriodForm]
    query_fields: tuple[str, ...]
    # The patient form carries an MRN, which must not end up in a URL: it is posted.
    method: str


PATIENT_REPORT = Report(
    "patient",
    "Access report for one patient",
    "admin:audit_report_patient",
    PatientReportForm,
    ("patient_id", "date_from", "date_to"),
    "post",
)
USER_REPORT = Report(
    "user",
    "Access report for one user",
    "admin:audit_report_user",
    UserReportForm,
    ("username", "date_from", "date_to"),
    "get",
)


def _check_view(request: HttpRequest) -> None:
    if not can_view_audit(request.user):
        raise PermissionDenied("Your role does not allow this.")


def _query_form(report: Report, request: HttpRequest) -> _PeriodForm | None:
    """The report's form bound to the query string (never to an MRN in it), or None when empty."""
    data = {name: request.GET[name] for name in report.query_fields if name in request.GET}
    if not data:
        return None
    return report.form_class(data)


def _selection(report: Report, form: _PeriodForm) -> tuple[QuerySet[AccessEvent], dict[str, Any], list[int | None]]:
    """The events of a valid report form, the detail of its audit event, and the patients it is about."""
    data = form.cleaned_data
    period = {"date_from": data["date_from"].isoformat(), "date_to": data["date_to"].isoformat()}
    if report is PATIENT_REPORT:
        patient_id = int(data["patient_id"])
        events = patient_report_events(patient_id=patient_id, date_from=data["date_from"], date_to=data["date_to"])
        return events, {"report": "patient", "patient_id": patient_id, **period}, [patient_id]
    subject = user_report_subject(data["username"])
    events = user_report_events(subject=subject, date_from=data["date_from"], date_to=data["date_to"])
    detail: dict[str, Any] = {"report": "user", "subject_user_id": subject.user_id, **period}
    if subject.user_id is None:
        # Only a name recorded in the trail is kept, so a mistyped identifier is not stored.
        detail["subject_username"] = subject.username if events.exists() else None
    return events, detail, [None]


def report_view(request: HttpRequest, *, report: Report, admin_context: Mapping[str, Any]) -> HttpResponseBase:
    """The report page: the form, and once it is filled in, one page of events (audited)."""
    _check_view(request)
    url = reverse(report.url_name)
    if request.method == "POST":
        form = report.form_class(request.POST)
        if form.is_valid():
            # Post/redirect/get: the result page is addressed by ids and dates only.
            query = {name: _query_value(form.cleaned_data[name]) for name in report.query_fields}
            return redirect(f"{url}?{urlencode(query)}")
        return _render(request, report, admin_context, form=form)
    form = _query_form(report, request)
    if form is None:
        return _render(request, report, admin_context, form=report.form_class(initial=_default_period()))
    if not form.is_valid():
        return _render(request, report, admin_context, form=form)
    events, detail, patient_ids = _selection(report, form)
    page = Paginator(events, REPORT_PAGE_SIZE).get_page(request.GET.get("p"))
    # Read the page now, so that it shows the trail as counted, not this view's own event.
    page.object_list = list(page.object_list)
    record_trail_access(
        request,
        action="view",
        patient_ids=patient_ids,
        detail={**detail, "results": page.paginator.count, "page": page.number},
    )
    query = urlencode({name: _query_value(form.cleaned_data[name]) for name in report.query_fields})
    shown_form = report.form_class(initial=form.cleaned_data) if report is PATIENT_REPORT else form
    grants = (
        patient_report_grants(
            patient_id=detail["patient_id"],
            date_from=form.cleaned_data["date_from"],
            date_to=form.cleaned_data["date_to"],
        )
        if report is PATIENT_REPORT
        else []
    )
    return _render(
        request,
        report,
        admin_context,
        form=shown_form,
        page=page,
        query=query,
        heading=f"Patient #{detail['patient_id']}" if report is PATIENT_REPORT else form.cleaned_data["username"],
        grants=grants,
        export_url=f"{reverse(report.url_name + '_export')}?{query}" if can_export_audit(request.user) else "",
    )


def check_export(request: HttpRequest) -> HttpResponse | None:
    """Raise PermissionDenied (403) unless the user may export the trail; then, as for any bulk
    disclosure (STYLE.md, "sudo mode"), return a redirect to the one-time-code step unless a code
    was entered recently. None means: go ahead."""
    _check_view(request)
    if not can_export_audit(request.user):
        raise PermissionDenied("Your role does not allow exports of the audit trail.")
    if step_up_is_fresh(request):
        return None
    target = request.get_full_path() if request.method == "GET" else request.path
    return redirect(f"{reverse('accounts:step_up')}?{urlencode({'next': target})}")


def report_export_view(request: HttpRequest, *, report: Report) -> HttpResponseBase:
    """The whole report as a streamed CSV: ``export_audit`` only (403 otherwise), audited first."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    if (step_up := check_export(request)) is not None:
        return step_up
    form = _query_form(report, request)
    if form is None or not form.is_valid():
        # Nothing to export: back to the report, whose form says what is missing.
        return redirect(f"{reverse(report.url_name)}?{request.GET.urlencode()}")
    events, detail, patient_ids = _selection(report, form)
    recorded = record_trail_access(
        request, action="export", patient_ids=patient_ids, detail={**detail, "rows": events.count(), "format": "csv"}
    )
    # The file is read after the export's own event is written; it is left out (see the count).
    events = events.exclude(pk__in=[event.pk for event in recorded])
    return csv_response(
        name=f"audit-{report.kind}-report",
        header=REPORT_CSV_COLUMNS,
        rows=queryset_rows(events, REPORT_CSV_COLUMNS),
    )


def _query_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime.date) else str(value)


def _render(request: HttpRequest, report: Report, admin_context: Mapping[str, Any], **context: Any) -> HttpResponse:
    return TemplateResponse(
        request,
        "admin/audit/report.html",
        {
            **admin_context,
            "title": report.title,
            "report": report,
            "opts": AccessEvent._meta,
            "can_export": can_export_audit(request.user),
            **context,
        },
    )
