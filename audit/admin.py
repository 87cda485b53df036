"""The compliance officers' audit trail in the Django admin (DESIGN.md §6).

- Read-only: the audit tables are append-only (database triggers reject UPDATE and DELETE), so the
  admin never offers to add, change or delete, and has no delete action; the detail page is the
  view-only change form.
- Who: the role table decides (audit/permissions.py), not Django's model permissions. The admin site
  already requires the ``admin_site`` capability and a verified second factor (accounts/admin_site.py).
- Sortable by every column, filtered by validated filters (audit/admin_filters.py), searchable by
  username and by MRN through the blind index; no patient data is ever loaded or shown, a patient
  is "Patient #<id>".
- Audited: every list page, detail page, report and export writes an ``audit_trail`` access event
  before it is served (audit/reports.py); if that write fails, nothing is served.
- Exportable to CSV, streamed (audit/exports.py), by ``export_audit`` holders only.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlencode

from auditlog.admin import LogEntryAdmin as AuditlogLogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR, IncorrectLookupParameters
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ALL_VAR, ERROR_FLAG, IS_FACETS_VAR, ORDER_VAR, PAGE_VAR, SEARCH_VAR
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, Model, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponseBase, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from accounts.services import username_for_records
from audit import admin_filters as filters
from audit import reports
from audit.exports import csv_response, queryset_rows
from audit.models import (
    AccessEvent,
    Alert,
    AlertSubject,
    AuthEventRecord,
    ChangeEvent,
    DirectChange,
    DirectChangeSeal,
)
from audit.permissions import can_export_audit, can_view_audit
from records.models import BreakGlassGrant

# Query-string names that are not filters: search, ordering, paging and the admin's own switches.
NOT_FILTERS = frozenset(
    {ALL_VAR, ERROR_FLAG, IS_FACETS_VAR, IS_POPUP_VAR, ORDER_VAR, PAGE_VAR, SEARCH_VAR, TO_FIELD_VAR}
)
_ORDER_RE = re.compile(r"^-?[0-9]{1,3}(\.-?[0-9]{1,3})*$")
_REQUEST_ID_RE = re.compile(r"^[0-9A-Za-z_-]{8,64}$")
# Where get_search_results leaves the patients an MRN search matched, for the audit event.
SHORT = 40


def _short(value: str, length: int = SHORT) -> str:
    return Truncator(value).chars(length)


def _ip_condition(term: str) -> Q | None:
    try:
        ipaddress.ip_address(term)
    except ValueError:
        return None
    return Q(ip=term)


class AuditTrailAdmin(admin.ModelAdmin):
    """Shared by the four audit tables: permissions, validated lookups, auditing, CSV export."""

    csv_columns: ClassVar[tuple[str, ...]] = ()
    date_hierarchy = "at"
    list_per_page = 100
    # Counting the whole table on every page costs a full scan; the filtered count is enough.
    show_full_result_count = False
    # Facet counts are one COUNT per choice over millions of rows.
    show_facets = admin.ShowFacets.NEVER
    actions = ["export_selected_csv"]
    empty_value_display = "—"
    # The search box is shown when search_fields is set; get_search_results does the searching.
    search_fields = ("actor_username",)
    search_help_text = "Username, IP address or request id; or a patient's MRN (exact, case and spaces ignored)."

    # --- Permissions: from the role table; never add, change or delete ------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view_audit(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return can_view_audit(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_export_permission(self, request: HttpRequest) -> bool:
        """Used by the export action (``permissions=["export"]``) and the changelist's export link."""
        return can_view_audit(request.user) and can_export_audit(request.user)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Already filtered out by has_delete_permission; removed by name as well, so that a future
        # change of permissions cannot bring back a button that the database would refuse anyway.
        actions.pop("delete_selected", None)
        return actions

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return list(flatten_fieldsets(self.get_fieldsets(request, obj)))

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # Only the validating list filters and the date hierarchy: Django would otherwise accept any
        # lookup on any column from the query string (e.g. ``?detail__contains=``), unvalidated, and
        # that text would land in the audit event of this view.
        allowed = filters.filter_parameters(self.list_filter)
        if self.date_hierarchy:
            allowed |= {f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day")}
        return lookup in allowed

    # --- Search -----------------------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = " ".join(search_term.split())
        if not term:
            return queryset, False
        return queryset.filter(self.search_condition(request, term)), False

    def search_condition(self, request: HttpRequest, term: str) -> Q:
        """What ``term`` matches in this table (each admin says)."""
        raise NotImplementedError

    # --- Columns ----------------------------------------------------------------------------------

    def _changelist_link(self, text: str, **params: Any) -> SafeString:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), text)

    def _actor_link(self, actor_id: int | None, username: str) -> str:
        if actor_id is None:
            return username or "(nobody signed in)"
        return self._changelist_link(f"{username or '?'} (#{actor_id})", actor_id=actor_id)

    @admin.display(description="user agent", ordering="user_agent")
    def user_agent_short(self, obj: Any) -> str:
        return _short(obj.user_agent)

    @admin.display(description="detail", ordering="detail")
    def detail_short(self, obj: Any) -> str:
        return _short(json.dumps(obj.detail, sort_keys=True, separators=(",", ":")), 60) if obj.detail else ""

    @admin.display(description="detail")
    def detail_pretty(self, obj: Any) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.detail, indent=2, sort_keys=True))

    # --- Audit of the audit -------------------------------------------------------------------------

    def audit_detail(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        """The detail of the audit event of a view or export: table, filters, ordering, counts.

        The filters' values are safe to store: lookup_allowed admits only the validating filters,
        which have refused anything but a known value, a number or a date by now. The search term is
        never stored, only that there was one (MRNs are looked up by POST and arrive as a patient id filter).
        """
        detail: dict[str, Any] = {
            "model": self.opts.model_name,
            "filters": {name: value for name, value in request.GET.items() if name not in NOT_FILTERS},
        }
        if request.GET.get(SEARCH_VAR, "").strip():
            detail["search"] = True
        if _ORDER_RE.match(request.GET.get(ORDER_VAR, "")):
            detail["ordering"] = request.GET[ORDER_VAR]
        return {**detail, **extra}

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponseBase:
        context = {
            **(extra_context or {}),
            "audit_can_export": self.has_export_permission(request),
            "audit_export_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_export"),
            "audit_reports": self.report_links(),
        }
        response = super().changelist_view(request, extra_context=context)
        # A rendered list is a view of the trail, whatever the method (a POST without a usable
        # action renders the list too). Exports audit themselves; redirects and the "invalid
        # filter" page show no event.
        changelist = response.context_data.get("cl") if isinstance(response, TemplateResponse) else None
        if changelist is not None:
            # Read the page now, so that it shows the trail as counted, not this view's own event.
            changelist.result_list = list(changelist.result_list)
            reports.record_trail_access(
                request,
                action="view",
                detail=self.audit_detail(
                    request, view="list", results=changelist.result_count, page=changelist.page_num
                ),
            )
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponseBase:
        # A POST is refused by Django (no change permission) before anything is shown.
        response = super().change_view(request, object_id, form_url, extra_context)
        original = response.context_data.get("original") if isinstance(response, TemplateResponse) else None
        if original is not None:
            reports.record_trail_access(
                request,
                action="view",
                detail={"model": self.opts.model_name, "view": "detail", "object_id": original.pk},
            )
        return response

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        raise PermissionDenied("Audit events have no edit history: they are never edited.")

    def report_links(self) -> list[dict[str, str]]:
        """Links shown above the list (the access events list them)."""
        return []

    # --- CSV export ---------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name="{}_{}_export".format(*info)),
            *super().get_urls(),
        ]

    def _csv(self, queryset: QuerySet[Any], recorded: list[AccessEvent]) -> HttpResponseBase:
        # The file is read after the export's own event is written; it is left out, so the file
        # holds the rows that were counted in that event.
        if self.model is AccessEvent:
            queryset = queryset.exclude(pk__in=[event.pk for event in recorded])
        return csv_response(
            name=f"audit-{self.opts.model_name}",
            header=self.csv_columns,
            rows=queryset_rows(queryset, self.csv_columns),
        )

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The changelist as it is filtered, searched and sorted, as one streamed CSV file."""
        # GET only: a HEAD would be recorded as an export without anything being exported.
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if (step_up := reports.check_export(request)) is not None:
            return step_up
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            return redirect(f"{url}?{ERROR_FLAG}=1")
        recorded = reports.record_trail_access(
            request,
            action="export",
            detail=self.audit_detail(request, view="export", rows=changelist.result_count, format="csv"),
        )
        return self._csv(changelist.queryset, recorded)

    @admin.action(description="Export selected %(verbose_name_plural)s as CSV", permissions=["export"])
    def export_selected_csv(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponseBase:
        """The selected rows (or, with "select all", the whole filtered list) as a streamed CSV."""
        # permissions=["export"] hides the action; checked again, in case it is posted anyway.
        if (step_up := reports.check_export(request)) is not None:
            return step_up
        recorded = reports.record_trail_access(
            request,
            action="export",
            detail=self.audit_detail(
                request,
                view="export_action",
                rows=queryset.count(),
                format="csv",
                select_across=request.POST.get("select_across") == "1",
            ),
        )
        return self._csv(queryset, recorded)


class PatientEventAdmin(AuditTrailAdmin):
    """Access and change events: an actor and a patient."""

    @admin.display(description="actor", ordering="actor_username")
    def actor(self, obj: AccessEvent | ChangeEvent) -> str:
        return self._actor_link(obj.actor_id, obj.actor_username)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponseBase:
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
        return super().changelist_view(request, {**(extra_context or {}), "audit_mrn_search": True})

    @admin.display(description="patient", ordering="patient_id")
    def patient(self, obj: AccessEvent | ChangeEvent) -> str:
        # Only the id: showing a name would mean decrypting the record, and this is not a chart.
        if obj.patient_id is None:
            return "—"
        return self._changelist_link(f"Patient #{obj.patient_id}", patient_id=obj.patient_id)

    def search_condition(self, request: HttpRequest, term: str) -> Q:
        # No MRN here: the search box is a GET form and an MRN must never be in a URL. MRNs are
        # looked up by the POST form of changelist_view, which redirects to a patient id filter.
        condition = Q(actor_username__icontains=term)
        if (ip := _ip_condition(term)) is not None:
            condition |= ip
        if _REQUEST_ID_RE.match(term):
            condition |= Q(request_id=term)
        return condition


@admin.register(AccessEvent)
class AccessEventAdmin(PatientEventAdmin):
    list_display = (
        "id",
        "at",
        "actor",
        "actor_role",
        "patient",
        "category",
        "action",
        "purpose",
        "explanation",
        "detail_short",
        "ip",
        "user_agent_short",
        "request_id",
        "session_ref",
    )
    list_filter = (
        filters.DateRangeFilter,
        filters.ActorRoleFilter,
        filters.ActionFilter,
        filters.CategoryFilter,
        filters.PurposeFilter,
        filters.ActorIdFilter,
        filters.PatientIdFilter,
    )
    fieldsets = (
        (None, {"fields": ("id", "at", "actor", "actor_role", "patient", "category", "action")}),
        ("Why", {"fields": ("purpose", "explanation", "detail_pretty")}),
        ("Where", {"fields": ("ip", "user_agent", "request_id", "session_ref")}),
        ("Hash chain", {"classes": ("collapse",), "fields": ("partition", "seq", "prev_hash", "hash")}),
    )
    csv_columns = (*reports.REPORT_CSV_COLUMNS, "partition", "seq", "hash")

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
class ChangeEventAdmin(PatientEventAdmin):
    list_display = (
        "id",
        "at",
        "actor",
        "actor_role",
        "patient",
        "category",
        "action",
        "object_type",
        "object_id",
        "field_names",
        "ip",
        "user_agent_short",
        "request_id",
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
        return ", ".join(str(name) for name in obj.fields or ())


@admin.register(AuthEventRecord)
class AuthEventRecordAdmin(AuditTrailAdmin):
    list_display = ("id", "at", "event", "username", "actor", "target", "ip", "user_agent_short", "detail_short")
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
        if (ip := _ip_condition(term)) is not None:
            condition |= ip
        return condition


@admin.register(DirectChange)
class DirectChangeAdmin(AuditTrailAdmin):
    """Row changes recorded by the database's triggers, with the verdict of the sealer on each marker.

    "Verified" comes from the row's seal (audit/sealing.py): the marker's MAC and transaction id
    checked by the application. Until the sealer has run, a row is "not yet sealed", whatever its
    marker says: a marker is text anyone with a database login can type.
    """

    list_display = (
        "id",
        "at",
        "table_name",
        "operation",
        "row_id",
        "marker_status",
        "sealed_actor",
        "db_user",
        "client_addr",
        "backend_pid",
        "application_name",
        "txid",
    )
    list_filter = (
        filters.DateRangeFilter,
        filters.DirectFilter,
        filters.TableFilter,
        filters.OperationFilter,
        filters.MarkerActorFilter,
    )
    fieldsets = (
        (None, {"fields": ("id", "at", "table_name", "operation", "row_id", "command")}),
        ("Who", {"fields": ("marker_status", "sealed_actor", "actor_marker", "db_user")}),
        ("Where", {"fields": ("client_addr", "backend_pid", "application_name", "txid")}),
    )
    search_fields = ("table_name",)
    search_help_text = "Table, actor marker, database login, or the username of the application user."
    csv_columns = (
        "id",
        "at",
        "table_name",
        "operation",
        "row_id",
        "command",
        "actor_marker",
        "db_user",
        "client_addr",
        "backend_pid",
        "application_name",
        "txid",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        seal = DirectChangeSeal.objects.filter(direct_change_id=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                seal_verified=Subquery(seal.values("verified")[:1]),
                seal_actor=Subquery(seal.values("actor")[:1]),
            )
        )

    @admin.display(description="marker", ordering="seal_verified")
    def marker_status(self, obj: DirectChange) -> str:
        verified = getattr(obj, "seal_verified", None)
        if verified is None:
            return "not yet sealed"
        return "verified (the application)" if verified else "NOT verified: outside the application"

    @admin.display(description="application user", ordering="seal_actor")
    def sealed_actor(self, obj: DirectChange) -> str:
        actor = getattr(obj, "seal_actor", None) or ""
        if actor.startswith("user:"):
            return self._changelist_link(f"User #{actor[5:]}", actor_id=actor[5:])
        return actor

    def search_condition(self, request: HttpRequest, term: str) -> Q:
        condition = Q(table_name__icontains=term) | Q(actor_marker__icontains=term) | Q(db_user__icontains=term)
        # A verified marker names the application user by id: find the ids of the username.
        user_ids = get_user_model().objects.filter(username__icontains=term).values_list("pk", flat=True)[:100]
        actors = [f"user:{pk}" for pk in user_ids]
        if actors:
            seals = DirectChangeSeal.objects.filter(direct_change_id=OuterRef("pk"), verified=True, actor__in=actors)
            condition |= Q(Exists(seals))
        return condition


class AlertSubjectInline(admin.TabularInline):
    """What an alert is about (event ids by kind); read-only like everything here."""

    model = AlertSubject
    fields = ("kind", "object_id", "rule")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return can_view_audit(request.user)

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(AuditTrailAdmin):
    """Alerts of the anomaly rules, for compliance to read (the security team works them at /security/).

    The investigators' notes and resolution are encrypted and may mention anything: they are on the
    detail page only, never in the list or the CSV.
    """

    date_hierarchy = "created_at"
    list_display = (
        "id",
        "created_at",
        "occurred_at",
        "rule",
        "severity",
        "status",
        "actor",
        "actor_role",
        "patient",
        "department_id",
        "assignee",
        "closed_at",
    )
    list_filter = (
        filters.CreatedRangeFilter,
        filters.RuleFilter,
        filters.SeverityFilter,
        filters.StatusFilter,
        filters.ActorIdFilter,
        filters.PatientIdFilter,
    )
    fieldsets = (
        (None, {"fields": ("id", "rule", "severity", "status", "reason")}),
        ("Who", {"fields": ("actor", "actor_role", "patient", "department_id")}),
        ("When", {"fields": ("occurred_at", "created_at", "updated_at", "closed_at")}),
        ("Review", {"fields": ("assignee", "notes", "resolution")}),
    )
    inlines = (AlertSubjectInline,)
    search_fields = ("actor_username",)
    search_help_text = "Username of the person the alert is about, or a rule name."
    csv_columns = (
        "id",
        "created_at",
        "occurred_at",
        "rule",
        "severity",
        "status",
        "reason",
        "actor_id",
        "actor_username",
        "actor_role",
        "department_id",
        "patient_id",
        "assignee__username",
        "closed_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request).select_related("assignee")
        # Lists never show the encrypted columns; the detail page loads the whole row itself.
        if request.resolver_match and request.resolver_match.url_name.endswith("_changelist"):
            queryset = queryset.defer("notes", "resolution")
        return queryset

    @admin.display(description="user", ordering="actor_username")
    def actor(self, obj: Alert) -> str:
        return self._actor_link(obj.actor_id, obj.actor_username)

    @admin.display(description="patient", ordering="patient_id")
    def patient(self, obj: Alert) -> str:
        if obj.patient_id is None:
            return "—"
        return self._changelist_link(f"Patient #{obj.patient_id}", patient_id=obj.patient_id)

    def search_condition(self, request: HttpRequest, term: str) -> Q:
        return Q(actor_username__icontains=term) | Q(rule__icontains=term)


@admin.register(BreakGlassGrant)
class BreakGlassGrantAdmin(AuditTrailAdmin):
    """Emergency-access grants, for compliance to read. The free-text explanation may describe the
    patient's condition: it is on the detail page only (encrypted at rest), never in the list or CSV."""

    date_hierarchy = "granted_at"
    list_display = ("id", "granted_at", "user_link", "patient", "reason", "expires_at", "ended_at")
    list_filter = (
        filters.GrantedRangeFilter,
        filters.GrantReasonFilter,
        filters.GrantUserFilter,
        filters.PatientIdFilter,
    )
    fieldsets = (
        (None, {"fields": ("id", "user_link", "patient", "reason", "explanation")}),
        ("When", {"fields": ("granted_at", "expires_at", "ended_at")}),
    )
    search_fields = ("user__username",)
    search_help_text = "Username of the person who broke the glass."
    csv_columns = ("id", "granted_at", "user_id", "user__username", "patient_id", "reason", "expires_at", "ended_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request).select_related("user")
        if request.resolver_match and request.resolver_match.url_name.endswith("_changelist"):
            queryset = queryset.defer("explanation")
        return queryset

    @admin.display(description="user", ordering="user__username")
    def user_link(self, obj: BreakGlassGrant) -> str:
        return self._changelist_link(f"{obj.user.username} (#{obj.user_id})", user_id=obj.user_id)

    @admin.display(description="patient", ordering="patient_id")
    def patient(self, obj: BreakGlassGrant) -> str:
        # The id only: a name would mean decrypting the record, and this is not a chart.
        return self._changelist_link(f"Patient #{obj.patient_id}", patient_id=obj.patient_id)

    def search_condition(self, request: HttpRequest, term: str) -> Q:
        return Q(user__username__icontains=term)


# django-auditlog's change history: the same rules as the rest of the trail (role table, read-only).
class ChangeHistoryAdmin(AuditlogLogEntryAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view_audit(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view_audit(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


if admin.site.is_registered(LogEntry):
    admin.site.unregister(LogEntry)
admin.site.register(LogEntry, ChangeHistoryAdmin)
