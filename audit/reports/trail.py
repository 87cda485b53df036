"""Who may read and export the audit trail, and the audit of the audit trail itself.

Every view and every export of the trail writes an ``audit_trail`` access event *before* anything is
shown, and a failure to write it propagates, so nothing is shown unrecorded (fail closed).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from accounts.services import step_up_is_fresh
from audit.models import AccessEvent
from audit.permissions import can_export_audit, can_view_audit
from audit.services import access_event_record

AUDIT_TRAIL_CATEGORY = "audit_trail"
COMPLIANCE_PURPOSE = "compliance"


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
    ids used, never a search term (audit/admin/base.py ``audit_detail``). Returns the events written.
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


def check_view(request: HttpRequest) -> None:
    """Raise PermissionDenied (403) unless the user's role may read the audit trail."""
    if not can_view_audit(request.user):
        raise PermissionDenied("Your role does not allow this.")


def check_export(request: HttpRequest) -> HttpResponse | None:
    """Raise PermissionDenied (403) unless the user may export the trail; then, as for any bulk
    disclosure (STYLE.md, "sudo mode"), return a redirect to the one-time-code step unless a code
    was entered recently. None means: go ahead."""
    check_view(request)
    if not can_export_audit(request.user):
        raise PermissionDenied("Your role does not allow exports of the audit trail.")
    if step_up_is_fresh(request):
        return None
    target = request.get_full_path() if request.method == "GET" else request.path
    return redirect(f"{reverse('accounts:step_up')}?{urlencode({'next': target})}")
