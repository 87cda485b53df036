"""What every audit admin shares (DESIGN.md §6): read-only, role-table permissions, validated lookups,
the audit of every view, and the CSV export.

- Read-only: the audit tables are append-only (database triggers reject UPDATE and DELETE), so the
  admin never offers to add, change or delete, and has no delete action; the detail page is the
  view-only change form.
- Who: the role table decides (audit/permissions.py), not Django's model permissions. The admin site
  already requires the ``admin_site`` capability and a verified second factor (accounts/admin_site.py).
- Sortable by every column, filtered by validated filters (audit/admin_filters.py), searchable by
  username and by MRN through the blind index; no patient data is ever loaded or shown, a patient
  is "Patient #<id>".
- Audited: every list page, detail page, report and export writes an ``audit_trail`` access event
  before it is served (audit/reports/); if that write fails, nothing is served.
- Exportable to CSV, streamed (audit/exports.py), by ``export_audit`` holders only.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.options import IS_FACETS_VAR, IS_POPUP_VAR, TO_FIELD_VAR, IncorrectLookupParameters
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ALL_VAR, ERROR_FLAG, ORDER_VAR, PAGE_VAR, SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from audit import admin_filters as filters
from audit import reports
from audit.exports import csv_response, queryset_rows
from audit.models import AccessEvent
from audit.permissions import can_export_audit, can_view_audit

_M = TypeVar("_M", bound=Model)

# Query-string names that are not filters: search, ordering, paging and the admin's own switches.
NOT_FILTERS = frozenset(
    {ALL_VAR, ERROR_FLAG, IS_FACETS_VAR, IS_POPUP_VAR, ORDER_VAR, PAGE_VAR, SEARCH_VAR, TO_FIELD_VAR}
)
_ORDER_RE = re.compile(r"^-?[0-9]{1,3}(\.-?[0-9]{1,3})*$")
SHORT = 40


def _short(value: str, length: int = SHORT) -> str:
    return Truncator(value).chars(length)


def ip_condition(term: str) -> Q | None:
    """``ip = term`` when the search term is an IP address, else None."""
    try:
        ipaddress.ip_address(term)
    except ValueError:
        return None
    return Q(ip=term)


def is_changelist(request: HttpRequest) -> bool:
    """True on a list page (where the encrypted columns are deferred), False on a detail page."""
    match = request.resolver_match
    return match is not None and (match.url_name or "").endswith("_changelist")


class AuditTrailAdmin(admin.ModelAdmin[_M]):
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

    def has_view_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return can_view_audit(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
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

    def get_readonly_fields(self, request: HttpRequest, obj: _M | None = None) -> list[str]:
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
        self, request: HttpRequest, queryset: QuerySet[_M], search_term: str
    ) -> tuple[QuerySet[_M], bool]:
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
        return _short(json.dumps(obj.detail, sort_keys=True, separators=(",", ":"))) if obj.detail else ""

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

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
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
        changelist = (response.context_data or {}).get("cl") if isinstance(response, TemplateResponse) else None
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
    ) -> HttpResponse:
        # A POST is refused by Django (no change permission) before anything is shown.
        response = super().change_view(request, object_id, form_url, extra_context)
        original = (response.context_data or {}).get("original") if isinstance(response, TemplateResponse) else None
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

    def _csv(self, queryset: QuerySet[_M], recorded: list[AccessEvent]) -> HttpResponseBase:
        # The file is read after the export's own event is written; it is left out, so the file
        # holds the rows that were counted in that event.
        if self.model is AccessEvent:
            queryset = queryset.exclude(pk__in=[event.pk for event in recorded])
        return csv_response(name=f"audit-{self.opts.model_name}", header=self.csv_columns, rows=self.csv_rows(queryset))

    def csv_rows(self, queryset: QuerySet[_M]) -> Iterator[tuple[Any, ...]]:
        """The CSV's rows: the ``csv_columns`` of every row, streamed."""
        return queryset_rows(queryset, self.csv_columns)

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
    def export_selected_csv(self, request: HttpRequest, queryset: QuerySet[_M]) -> HttpResponseBase:
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
