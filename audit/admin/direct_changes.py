"""Row changes recorded by the database's own triggers (DESIGN.md §6, "Direct database access")."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest

from audit import admin_filters as filters
from audit.admin.base import AuditTrailAdmin
from audit.models import DirectChange, DirectChangeSeal


@admin.register(DirectChange)
class DirectChangeAdmin(AuditTrailAdmin[DirectChange]):
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[DirectChange]:
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
