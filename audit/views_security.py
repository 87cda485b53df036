"""The security team's workspace under /security/ (beside the lockout desk): alert queue, an alert's
page with its actions, reports with charts, CSV exports.

Thin views (STYLE.md): form -> capability (``review_alerts``, 403 for every other role) -> selector or
service -> render. Every page that shows who accessed which patient is itself an access event
(category ``security_alert``, metadata only) written before the page is served; if it cannot be
written, nothing is shown. Exports also need a one-time code entered recently (like the audit export).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import capability_required
from accounts.roles import Capability
from accounts.services import step_up_is_fresh
from audit import alert_workflow, security_reports, security_selectors
from audit.exports import csv_response, queryset_rows
from audit.forms_security import SORT_CHOICES, AssignForm, BulkAcknowledgeForm, CloseForm, NoteForm, QueueFilterForm
from audit.models import Alert
from audit.security_reports import SECURITY_CATEGORY
from audit.services import access_event_record

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
SECURITY_PURPOSE = "security_review"
CSV_COLUMNS = security_selectors.ALERT_CSV_COLUMNS
CSV_HEADER = tuple(column.replace("__", "_") for column in CSV_COLUMNS)

review_alerts = capability_required(Capability.REVIEW_ALERTS)


def _record(request: HttpRequest, *, action: str, detail: dict[str, Any], patient_id: int | None = None) -> None:
    """The access event of a page or an export of the workspace; failures propagate (fail closed).

    ``explanation`` says why the read happened, so the anomaly rules see an explained access.
    """
    access_event_record(
        actor=request.user,
        patient_ids=[patient_id],
        categories=[SECURITY_CATEGORY],
        action=action,
        purpose=SECURITY_PURPOSE,
        explanation=SECURITY_PURPOSE,
        detail=detail,
    )


def _queue_form(data: Any) -> QueueFilterForm:
    return QueueFilterForm(data, rules=security_selectors.alert_rules())


def _filter_query(form: QueueFilterForm) -> str:
    """The filters as a query string (for paging links and the export form), validated values only."""
    if not form.is_valid():
        return ""
    params = {name: form.data.get(name) for name in form.fields if name != "sort" and form.data.get(name)}
    return urlencode(params)


@require_GET
@review_alerts
def alert_queue(request: HttpRequest) -> HttpResponse:
    """The queue: filters, sorting, paging; bulk acknowledge and CSV export post from here."""
    form = _queue_form(request.GET)
    if not form.is_valid():
        return render(request, "audit/security/queue.html", {"form": form, "page": None}, status=400)
    filters = form.filters()
    page = Paginator(security_selectors.alert_queue(filters), PAGE_SIZE).get_page(request.GET.get("page"))
    alerts = list(page.object_list)
    departments = security_selectors.department_names()
    for alert in alerts:
        alert.department_name = departments.get(alert.department_id, "")
    _record(request, action="list", detail={"view": "alert_queue", "filters": filters.as_detail(), "page": page.number})
    query = _filter_query(form)
    return render(
        request,
        "audit/security/queue.html",
        {
            "form": form,
            "page": page,
            "alerts": alerts,
            "query": query,
            "sort": filters.sort,
            "sort_choices": SORT_CHOICES,
        },
    )


@require_POST
@review_alerts
def alert_bulk_acknowledge(request: HttpRequest) -> HttpResponse:
    """Acknowledge the ticked alerts (the open ones among them)."""
    form = BulkAcknowledgeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Tick at least one alert to acknowledge.")
        return redirect(_back_to_queue(request))
    # The form already holds the selection to BULK_MAX ids, so the service's own cap cannot refuse it.
    count = alert_workflow.alert_bulk_acknowledge(actor=request.user, alert_ids=form.cleaned_data["alert"])
    messages.success(request, f"{count} alert{'s' if count != 1 else ''} acknowledged.")
    return redirect(_back_to_queue(request))


def _back_to_queue(request: HttpRequest) -> str:
    form = _queue_form(request.POST)
    query = _filter_query(form)
    url = reverse("security:alerts")
    return f"{url}?{query}" if query else url


@require_POST
@review_alerts
def alert_export(request: HttpRequest) -> HttpResponseBase:
    """The filtered queue as a streamed CSV (no notes: they are encrypted and stay on the alert's page).

    A bulk disclosure of who may have snooped on whom: POST only (nothing to prefetch or replay from
    history) and a one-time code entered recently, like the audit export.
    """
    form = _queue_form(request.POST)
    if not step_up_is_fresh(request):
        queue = reverse("security:alerts")
        query = _filter_query(form)
        target = f"{queue}?{query}" if query else queue
        messages.info(request, "Enter a one-time code, then export again.")
        return redirect(f"{reverse('accounts:step_up')}?{urlencode({'next': target})}")
    if not form.is_valid():
        return render(request, "audit/security/queue.html", {"form": form, "page": None}, status=400)
    filters = form.filters()
    alerts = security_selectors.alert_queue(filters)
    _record(request, action="export", detail={"view": "alert_export", "filters": filters.as_detail(), "format": "csv"})
    return csv_response(name="security-alerts", header=CSV_HEADER, rows=queryset_rows(alerts, CSV_COLUMNS))


def _alert_or_404(alert_id: int) -> Alert:
    alert = Alert.objects.select_related("assignee").filter(pk=alert_id).first()
    if alert is None:
        raise Http404("No such alert.")
    return alert


@require_GET
@review_alerts
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    """An alert: its events, the user's recent activity, the patient's recent access, the actions."""
    alert = _alert_or_404(alert_id)
    return _render_alert(request, alert)


def _render_alert(request: HttpRequest, alert: Alert, status: int = 200, **forms: Any) -> HttpResponse:
    context = security_selectors.alert_context(alert)
    # "review", not "view": the anomaly rules judge openings of a record, and this is not one.
    _record(request, action="review", detail={"view": "alert", "alert_id": alert.pk}, patient_id=alert.patient_id)
    team = security_selectors.security_team()
    return render(
        request,
        "audit/security/alert.html",
        {
            "alert": alert,
            "ctx": context,
            "is_closed": alert.status in Alert.CLOSED_STATUSES,
            "assign_form": forms.get("assign_form") or AssignForm(initial={"assignee": alert.assignee_id}, team=team),
            "note_form": forms.get("note_form") or NoteForm(),
            "close_form": forms.get("close_form") or CloseForm(),
        },
        status=status,
    )


def _act(request: HttpRequest, alert_id: int, action: Any, success: str, **forms: Any) -> HttpResponse:
    """Run a workflow service; on a refused transition or bad input, show the alert again with a 4xx."""
    try:
        action()
    except Alert.DoesNotExist:
        raise Http404("No such alert.") from None
    except alert_workflow.AlertTransitionError as error:
        messages.error(request, " ".join(error.messages))
        return _render_alert(request, _alert_or_404(alert_id), status=409)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return _render_alert(request, _alert_or_404(alert_id), status=400, **forms)
    messages.success(request, success)
    return redirect("security:alert", alert_id=alert_id)


@require_POST
@review_alerts
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act(
        request,
        alert_id,
        lambda: alert_workflow.alert_acknowledge(actor=request.user, alert_id=alert_id),
        "Alert acknowledged.",
    )


@require_POST
@review_alerts
def alert_assign(request: HttpRequest, alert_id: int) -> HttpResponse:
    _alert_or_404(alert_id)
    form = AssignForm(request.POST, team=security_selectors.security_team())
    if not form.is_valid():
        return _render_alert(request, _alert_or_404(alert_id), status=400, assign_form=form)
    assignee = form.cleaned_data["assignee"]
    return _act(
        request,
        alert_id,
        lambda: alert_workflow.alert_assign(actor=request.user, alert_id=alert_id, assignee=assignee),
        f"Alert assigned to {assignee.username}." if assignee else "Alert unassigned.",
    )


@require_POST
@review_alerts
def alert_note(request: HttpRequest, alert_id: int) -> HttpResponse:
    _alert_or_404(alert_id)
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _render_alert(request, _alert_or_404(alert_id), status=400, note_form=form)
    return _act(
        request,
        alert_id,
        lambda: alert_workflow.alert_note(actor=request.user, alert_id=alert_id, note=form.cleaned_data["note"]),
        "Note added.",
        note_form=form,
    )


@require_POST
@review_alerts
def alert_close(request: HttpRequest, alert_id: int) -> HttpResponse:
    _alert_or_404(alert_id)
    form = CloseForm(request.POST)
    if not form.is_valid():
        return _render_alert(request, _alert_or_404(alert_id), status=400, close_form=form)
    data = form.cleaned_data
    return _act(
        request,
        alert_id,
        lambda: alert_workflow.alert_close(
            actor=request.user, alert_id=alert_id, resolution=data["resolution"], note=data["note"]
        ),
        "Alert closed.",
        close_form=form,
    )


def _window_days(request: HttpRequest) -> int:
    raw = request.GET.get("days", "")
    return int(raw) if raw.isdigit() and int(raw) in security_reports.WINDOW_CHOICES else security_reports.DEFAULT_DAYS


@require_GET
@review_alerts
def reports(request: HttpRequest) -> HttpResponse:
    """Charts (drawn by static/js/security-charts.js from json_script data), each with its table and CSV."""
    days = _window_days(request)
    charts = security_reports.all_charts(timezone.now(), days)
    _record(request, action="view", detail={"view": "security_reports", "days": days})
    return render(
        request,
        "audit/security/reports.html",
        {
            "charts": charts,
            "chart_data": {chart.slug: chart.as_json() for chart in charts},
            "days": days,
            "window_choices": security_reports.WINDOW_CHOICES,
        },
    )


@require_GET
@review_alerts
def report_csv(request: HttpRequest, slug: str) -> HttpResponseBase:
    """One chart's table as CSV (aggregates: usernames and counts, no patient). Needs a recent code."""
    days = _window_days(request)
    if slug not in security_reports.SLUGS:
        raise Http404("No such report.")
    if not step_up_is_fresh(request):
        return redirect(f"{reverse('accounts:step_up')}?{urlencode({'next': request.get_full_path()})}")
    chart = security_reports.chart_by_slug(slug, timezone.now(), days)
    if chart is None:  # pragma: no cover (checked above)
        raise Http404("No such report.")
    _record(request, action="export", detail={"view": "security_report", "report": slug, "days": days})
    return csv_response(name=f"security-{slug}", header=chart.header(), rows=chart.rows())
