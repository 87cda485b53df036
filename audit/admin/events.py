"""The audit trail's event tables in the admin: access events (with the two compliance reports),
change events and authentication events.

Access and change events are about a patient: besides the search box, their list answers a "Find by
MRN" form, posted so that the MRN never appears in a URL, which redirects to a patient id filter.
The patient column shows the MRN, read for the whole page at once on the read path
(``records.selectors.patient_mrns_for_audit``: one access event per patient shown, purpose
``compliance``), never a name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from accounts.services import username_for_records
from audit import admin_filters as filters
from audit import reports
from audit.admin.base import AuditTrailAdmin, _short, ip_condition
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent
from records.selectors import AccessRefused, patient_mrns_for_audit

_E = TypeVar("_E", AccessEvent, ChangeEvent)
_REQUEST_ID_RE = re.compile(r"^[0-9A-Za-z_-]{8,64}$")


class PatientEventAdmin(AuditTrailAdmin[_E]):
    """Access and change events: an actor and a patient."""

    @admin.display(description="actor", ordering="actor_username")
    def actor(self, obj: _E) -> str:
        return self._actor_link(obj.actor_id, obj.actor_username)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Also answers the "Find by MRN" form: POSTed, so the MRN never appears in a URL."""
        if request.method == "POST" and "mrn" in request.POST and "action" not in request.POST:
            if not self.has_view_permission(request):
                raise PermissionDenied
            url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            patient_ids = reports.patient_ids_for_mrn(" ".join(str(request.POST["mrn"]).split()))
            if not patient_ids:
                messages.warning(request, "No patient has this MRN.")
                return HttpResponseRedirect(url)
            return HttpResponseRedirect(f"{url}?{urlencode({'patient_id': patient_ids[0]})}")
        response = super().changelist_view(request, {**(extra_context or {}), "audit_mrn_search": True})
        changelist = (response.context_data or {}).get("cl") if isinstance(response, TemplateResponse) else None
        if changelist is not None:
            # The page's rows were read (and the view recorded) by the base class: their MRNs in one go.
            self._attach_mrns(request, list(changelist.result_list), view="list")
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        original = (response.context_data or {}).get("original") if isinstance(response, TemplateResponse) else None
        if original is not None:
            self._attach_mrns(request, [original], view="detail")
        return response

    def _attach_mrns(self, request: HttpRequest, rows: list[_E], *, view: str) -> None:
        """Give each row its patient's MRN for the patient column (rendered after this returns)."""
        try:
            mrns = patient_mrns_for_audit(
                actor=request.user, patient_ids=[row.patient_id for row in rows], view=f"{self.opts.model_name}_{view}"
            )
        except AccessRefused:
            # An operator (no role) may read the trail but not patients' identifiers: ids only.
            mrns = {}
        for row in rows:
            vars(row)["patient_mrn"] = mrns.get(row.patient_id) if row.patient_id is not None else None

    @admin.display(description="patient", ordering="patient_id")
    def patient(self, obj: _E) -> str:
        # The MRN read for this page (never a name: this is not a chart); the id if the patient is gone.
        if obj.patient_id is None:
            return "—"
        mrn = getattr(obj, "patient_mrn", None)
        text = f"MRN {mrn}" if mrn else f"Patient #{obj.patient_id}"
        return self._changelist_link(text, patient_id=obj.patient_id)

    def search_condition(self, request: HttpRequest, term: str) -> Q:
        # No MRN here: the search box is a GET form and an MRN must never be in a URL. MRNs are
        # looked up by the POST form of changelist_view, which redirects to a patient id filter.
        condition = Q(actor_username__icontains=term)
        if (ip := ip_condition(term)) is not None:
            condition |= ip
        if _REQUEST_ID_RE.match(term):
            condition |= Q(request_id=term)
        return condition


@admin.register(AccessEvent)
class AccessEventAdmin(PatientEventAdmin[AccessEvent]):
    # What fits a screen: who, whom, what and why. Where (IP, agent, request, session) is on the
    # detail page, in the search box (IP, request id) and in the CSV.
    list_display = (
        "id",
        "at",
        "actor",
        "actor_role",
        "patient",
        "sections_shown",
        "action",
        "purpose",
        "explanation",
        "detail_short",
    )
    list_filter = (
        filters.DateRangeFilter,
        filters.ActorRoleFilter,
        filters.ActionFilter,
        filters.SectionFilter,
        filters.PurposeFilter,
        filters.ActorIdFilter,
        filters.PatientIdFilter,
    )
    fieldsets = (
        (None, {"fields": ("id", "at", "actor", "actor_role", "patient", "sections_shown", "category", "action")}),
        ("Why", {"fields": ("purpose", "explanation", "detail_pretty")}),
        ("Where", {"fields": ("ip", "user_agent", "request_id", "session_ref")}),
        ("Hash chain", {"classes": ("collapse",), "fields": ("partition", "seq", "prev_hash", "hash")}),
    )
    csv_columns = (*reports.REPORT_CSV_COLUMNS, "partition", "seq", "hash")

    @admin.display(description="sections", ordering="category")
    def sections_shown(self, obj: AccessEvent) -> str:
        # Every section the access showed (an event written one per section shows its category).
        return _short(", ".join(obj.shown_sections))

    def csv_rows(self, queryset: QuerySet[AccessEvent]) -> Iterator[tuple[Any, ...]]:
        return reports.access_csv_rows(queryset, self.csv_columns)

    def report_links(self) -> list[dict[str, str]]:
        return [
            {"title": reports.PATIENT_REPORT.title, "url": reverse(reports.PATIENT_REPORT.url_name)},
            {"title": reports.USER_REPORT.title, "url": reverse(reports.USER_REPORT.url_name)},
        ]

    def get_urls(self) -> list[URLPattern]:
        def view(function: Callable[..., HttpResponseBase], **kwargs: Any) -> Callable[[HttpRequest], Any]:
            def bound(request: HttpRequest) -> HttpResponseBase:
                return function(request, **kwargs)

            return self.admin_site.admin_view(bound)

        patient, user = reports.PATIENT_REPORT, reports.USER_REPORT
        return [
            path("reports/patient/", view(self._report, report=patient), name="audit_report_patient"),
            path(
                "reports/patient/export/",
                view(reports.report_export_view, report=patient),
                name="audit_report_patient_export",
            ),
            path("reports/user/", view(self._report, report=user), name="audit_report_user"),
            path(
                "reports/user/export/", view(reports.report_export_view, report=user), name="audit_report_user_export"
            ),
            *super().get_urls(),
        ]

    def _report(self, request: HttpRequest, *, report: reports.Report) -> HttpResponseBase:
        return reports.report_view(request, report=report, admin_context=self.admin_site.each_context(request))


@admin.register(ChangeEvent)
class ChangeEventAdmin(PatientEventAdmin[ChangeEvent]):
    # As for access events: where it came from is on the detail page and in the CSV.
    list_display = (
        "id",
        "at",
        "actor",
        "actor_role",
        "patient",
        "category",
        "action",
        "object_type",
        "field_names",
    )
    list_filter = (
        filters.DateRangeFilter,
        filters.ActorRoleFilter,
        filters.ActionFilter,
        filters.CategoryFilter,
        filters.ObjectTypeFilter,
        filters.ActorIdFilter,
        filters.PatientIdFilter,
    )
    fieldsets = (
        (None, {"fields": ("id", "at", "actor", "actor_role", "patient", "category", "action")}),
        ("What", {"fields": ("object_type", "object_id", "field_names")}),
        ("Where", {"fields": ("ip", "user_agent", "request_id")}),
        ("Hash chain", {"classes": ("collapse",), "fields": ("partition", "seq", "prev_hash", "hash")}),
    )
    csv_columns = (
        "id",
        "at",
        "actor_id",
        "actor_username",
        "actor_role",
        "patient_id",
        "category",
        "action",
        "object_type",
        "object_id",
        "fields",
        "ip",
        "user_agent",
        "request_id",
        "partition",
        "seq",
        "hash",
    )

    @admin.display(description="fields changed", ordering="fields")
    def field_names(self, obj: ChangeEvent) -> str:
        # Names only: the change history never holds values.
        return _short(", ".join(str(name) for name in obj.fields or ()))


@admin.register(AuthEventRecord)
class AuthEventRecordAdmin(AuditTrailAdmin[AuthEventRecord]):
    list_display = ("id", "at", "event", "username", "actor", "target", "ip", "detail_short")
    list_filter = (
        filters.DateRangeFilter,
        filters.AuthEventFilter,
        filters.ActorIdFilter,
        filters.TargetIdFilter,
    )
    fieldsets = (
        (None, {"fields": ("id", "at", "event", "username", "actor", "target")}),
        ("Where", {"fields": ("ip", "user_agent", "detail_pretty")}),
        ("Hash chain", {"classes": ("collapse",), "fields": ("partition", "seq", "prev_hash", "hash")}),
    )
    search_fields = ("username",)
    search_help_text = "Username (also one that is no account: it is matched by its keyed hash) or IP address."
    csv_columns = (
        "id",
        "at",
        "event",
        "username",
        "actor_id",
        "target_id",
        "ip",
        "user_agent",
        "detail",
        "partition",
        "seq",
        "hash",
    )

    @admin.display(description="actor", ordering="actor_id")
    def actor(self, obj: AuthEventRecord) -> str:
        if obj.actor_id is None:
            return "—"
        return self._changelist_link(f"User #{obj.actor_id}", actor_id=obj.actor_id)

    @admin.display(description="target account", ordering="target_id")
    def target(self, obj: AuthEventRecord) -> str:
        if obj.target_id is None:
            return "—"
        return self._changelist_link(f"User #{obj.target_id}", target_id=obj.target_id)

    def search_condition(self, request: HttpRequest, term: str) -> Q:
        condition = Q(username__icontains=term)
        # A name that is no account is recorded only as a keyed hash (accounts/services.py):
        # hashing the term the same way finds those attempts without the name being stored.
        if (recorded := username_for_records(term)) != term:
            condition |= Q(username=recorded)
        if (ip := ip_condition(term)) is not None:
            condition |= ip
        return condition
