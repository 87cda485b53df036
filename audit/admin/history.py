"""django-auditlog's change history, under the same rules as the rest of the trail.

django-auditlog is untyped, so this subclass's base is ``Any`` to mypy: the one module where
``disallow_subclassing_any`` is off for it (pyproject.toml, ``audit.admin.*``).
"""

from __future__ import annotations

from typing import Any

from auditlog.admin import LogEntryAdmin as AuditlogLogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin
from django.http import HttpRequest

from audit.permissions import can_view_audit


class ChangeHistoryAdmin(AuditlogLogEntryAdmin):
    """The role table decides who reads it; nobody adds, changes or deletes an entry."""

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
