"""The two compliance reports as admin pages and streamed CSV files (audit/exports.py).

Both are over ``AccessEvent`` and a period of whole days:

- per patient: every access to one patient (chosen by id, or by MRN through the blind index), and
  the break-the-glass grants for them in the period (who, when, reason code, expiry; never the
  free-text explanation);
- per user: everything one member of staff opened.

Each page and each file is audited before it is served (audit/reports/trail.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from audit.exports import csv_response, queryset_rows
from audit.models import AccessEvent, sections_of
from audit.permissions import can_export_audit
from audit.reports.forms import PatientReportForm, PeriodForm, UserReportForm, default_period
from audit.reports.queries import patient_report_events, patient_report_grants, user_report_events, user_report_subject
from audit.reports.trail import check_export, check_view, record_trail_access

REPORT_PAGE_SIZE = 100

REPORT_CSV_COLUMNS = (
    "id",
    "at",
    "actor_id",
    "actor_username",
    "actor_role",
    "patient_id",
    "category",
    "sections",
    "action",
    "purpose",
    "explanation",
    "detail",
    "ip",
    "user_agent",
    "request_id",
    "session_ref",
)


def access_csv_rows(queryset: QuerySet[AccessEvent], columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The ``columns`` of every access event, streamed, with ``sections`` as ``sections_of`` answers
    it: an event written one per section (before events listed them) lists its category."""
    sections, category = columns.index("sections"), columns.index("category")
    for row in queryset_rows(queryset, columns):
        yield (
            *row[:sections],
            sections_of({"category": row[category], "sections": row[sections]}),
            *row[sections + 1 :],
        )


@dataclass(frozen=True)
class Report:
    """What differs between the two reports."""

    kind: str  # "patient" or "user"
    title: str
    url_name: str
    form_class: type[PeriodForm]
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


def _query_form(report: Report, request: HttpRequest) -> PeriodForm | None:
    """The report's form bound to the query string (never to an MRN in it), or None when empty."""
    data = {name: request.GET[name] for name in report.query_fields if name in request.GET}
    if not data:
        return None
    return report.form_class(data)


def _selection(report: Report, form: PeriodForm) -> tuple[QuerySet[AccessEvent], dict[str, Any], list[int | None]]:
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
    check_view(request)
    url = reverse(report.url_name)
    if request.method == "POST":
        posted = report.form_class(request.POST)
        if posted.is_valid():
            # Post/redirect/get: the result page is addressed by ids and dates only.
            return redirect(f"{url}?{_query_string(report, posted)}")
        return _render(request, report, admin_context, form=posted)
    form = _query_form(report, request)
    if form is None:
        return _render(request, report, admin_context, form=report.form_class(initial=default_period()))
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
    query = _query_string(report, form)
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
        rows=access_csv_rows(events, REPORT_CSV_COLUMNS),
    )


def _query_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime.date) else str(value)


def _query_string(report: Report, form: PeriodForm) -> str:
    """The query string that addresses the result page of a valid form: ids, names and dates only."""
    return urlencode({name: _query_value(form.cleaned_data[name]) for name in report.query_fields})


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
