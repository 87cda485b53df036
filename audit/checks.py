"""Refuse to start when patient data could be read or changed without being recorded."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder

from accounts.signals import auth_event
from audit.guards import MAINTENANCE_ROLE, guard_problems
from records.signals import (
    break_glass_granted,
    disclosure_made,
    patient_data_accessed,
    patient_data_changed,
    patient_rows_changed,
)

AUDIT_MIDDLEWARE = "audit.middleware.AuditContextMiddleware"
GUARDS_MIGRATION = ("audit", "0004_guards_v2")
# The last migration that changed a guard's definition: before it runs, the database holds the previous
# version of the guards (complete, and checked by that version's code), which `migrate` will replace.
LATEST_GUARDS_MIGRATION = ("audit", "0011_monthly_partitions")


@register(Tags.security)
def check_audit_receivers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every signal of the read and write paths must have a receiver, and the context middleware must run.

    ``break_glass_granted`` is checked too: its receiver raises the grant's alert for review (without
    it an emergency grant would go unreviewed). ``break_glass_ended`` is not: audit does not listen to
    it, the end of a grant is recorded through ``patient_data_accessed`` (action ``break_glass_end``).
    """
    errors: list[CheckMessage] = []
    signals = {
        "patient_data_accessed": patient_data_accessed,
        "patient_data_changed": patient_data_changed,
        # An import's rows are recorded through this one: without its receiver they would be written unrecorded.
        "patient_rows_changed": patient_rows_changed,
        "disclosure_made": disclosure_made,
        "auth_event": auth_event,
        "break_glass_granted": break_glass_granted,
    }
    for name, signal in signals.items():
        if not signal.has_listeners():
            errors.append(Error(f"No audit receiver is connected to {name}.", id="healthcrypt.E010"))
    if AUDIT_MIDDLEWARE not in settings.MIDDLEWARE:
        errors.append(Error(f"{AUDIT_MIDDLEWARE} is not in MIDDLEWARE.", id="healthcrypt.E011"))
    return errors


@register(Tags.security)
def check_alert_link(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Alert emails link to the security workspace: outside DEBUG the link needs SITE_URL's host."""
    if settings.DEBUG or getattr(settings, "TESTING", False):
        return []
    site = getattr(settings, "SITE_URL", "")
    if site.startswith(("https://", "http://")):
        return []
    return [
        CheckWarning(
            "SITE_URL is not an absolute URL: alert emails would carry a link without a host.",
            hint="Set SITE_URL to the address staff use, e.g. https://ehr.hospital.example.",
            id="healthcrypt.W014",
        )
    ]


@register(Tags.security, Tags.database)
def check_database_guards(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The database's audit guards must be in place and switched on (audit/guards.py: guard_problems).

    Tagged ``database``: it runs where Django checks databases (``migrate``, ``check --database``) and
    at server start (healthcrypt/checks.py: refuse_unsafe_start). Before the guards' migration is
    applied there is nothing to check yet, and ``migrate`` must still be able to install them.
    """
    messages: list[CheckMessage] = []
    for alias in databases or ():
        connection = connections[alias]
        try:
            recorder = MigrationRecorder(connection)
            if not recorder.has_table():
                continue  # a new, empty database: `migrate` is about to install everything
            if GUARDS_MIGRATION not in recorder.applied_migrations():
                messages.append(
                    CheckWarning(
                        f"The audit guards are not installed in database '{alias}' yet.",
                        hint="Run `python manage.py migrate`.",
                        id="healthcrypt.W012",
                    )
                )
                continue
            if LATEST_GUARDS_MIGRATION not in recorder.applied_migrations():
                messages.append(
                    CheckWarning(
                        f"The audit guards of database '{alias}' are an older version than this code's.",
                        hint="Run `python manage.py migrate` before serving requests.",
                        id="healthcrypt.W015",
                    )
                )
                continue
            problems = guard_problems(connection)
        except DatabaseError as exc:
            # Fail closed: a guard that cannot be checked is not known to be there.
            messages.append(
                Error(
                    f"Cannot check the audit guards of database '{alias}' ({type(exc).__name__}).",
                    id="healthcrypt.E013",
                )
            )
            continue
        for problem in problems:
            # On a developer's cluster, running the tests leaves the maintenance role behind: advice
            # there, an error anywhere else.
            role = MAINTENANCE_ROLE in problem
            level = CheckWarning if settings.DEBUG and role else Error
            hint = (
                f"DROP ROLE {MAINTENANCE_ROLE}; and never run the tests on this cluster."
                if role
                else "Find out who changed it (docs/operations/database-roles.md), then re-install the guards."
            )
            messages.append(
                level(f"Audit guard problem in database '{alias}': {problem}.", hint=hint, id="healthcrypt.E012")
            )
    return messages
