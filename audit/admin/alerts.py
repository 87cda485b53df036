"""What compliance reviews beside the events: the anomaly rules' alerts and the break-the-glass grants.

Both hold encrypted free text (investigators' notes, the emergency explanation) that may describe a
patient: it is on the detail page only, never in a list or a CSV file.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest

from audit import admin_filters as filters
from audit.admin.base import AuditTrailAdmin, is_changelist
from audit.models import Alert, AlertSubject
from audit.permissions import can_view_audit
from audit.security_selectors import ALERT_CSV_COLUMNS
from records.models import BreakGlassGrant


class AlertSubjectInline(admin.TabularInline[AlertSubject, Alert]):
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
class AlertAdmin(AuditTrailAdmin[Alert]):
    """Alerts of the anomaly rules, for compliance to read (the security team works them at /security/).

    The investigators' notes and resolution are encrypted and may mention anything: they are on the
    detail page only, never in the list or the CSV.
    """

    date_hierarchy = "created_at"
    # What fits a screen; when it happened, the department and the closing are on the detail page and in the CSV.
    list_display = (
        "id",
        "created_at",
        "rule",
        "severity",
        "status",
        "actor",
        "actor_role",
        "patient",
        "assignee",
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
    csv_columns = ALERT_CSV_COLUMNS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        queryset = super().get_queryset(request).select_related("assignee")
        # Lists never show the encrypted columns; the detail page loads the whole row itself.
        if is_changelist(request):
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
class BreakGlassGrantAdmin(AuditTrailAdmin[BreakGlassGrant]):
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[BreakGlassGrant]:
        queryset = super().get_queryset(request).select_related("user")
        if is_changelist(request):
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
