"""The research request workflow: a researcher submits, compliance decides (issue 13).

Every change is saved through these services with ``full_clean`` (the database constraints repeat the
invariants). Requests hold no patient data, so their history is django-auditlog's change history of
the two tables (research/history.py, registered in ResearchConfig.ready) plus a log line with ids
only; the reads of patient data a build makes are audited per patient by the read path
(records/selectors/research.py).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import Capability, has_capability
from research.models import CODE_MAX_LENGTH, FIELD_CATALOGUE, MAX_CONDITION_CODES, DatasetRequest

logger = logging.getLogger(__name__)

# SNOMED CT concept ids are 6-18 digits; ICD-10(-CM) codes a letter, two digits, an optional dot and
# up to four more characters. Anything else is refused: a criterion is a code, never free text.
_SNOMED = re.compile(r"[0-9]{6,18}")
_ICD10 = re.compile(r"[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?")


class RequestNotFound(Exception):
    """No request with that id (or not one the caller may act on)."""


def _condition_codes(raw: Sequence[str]) -> list[str]:
    codes: list[str] = []
    for value in raw:
        code = str(value).strip().upper()
        if len(code) > CODE_MAX_LENGTH or not (_SNOMED.fullmatch(code) or _ICD10.fullmatch(code)):
            raise ValidationError({"condition_codes": "Each condition code is a SNOMED CT id or an ICD-10 code."})
        if code not in codes:
            codes.append(code)
    if len(codes) > MAX_CONDITION_CODES:
        raise ValidationError({"condition_codes": f"At most {MAX_CONDITION_CODES} condition codes."})
    return codes


def _fields(raw: Sequence[str]) -> list[str]:
    wanted = [str(value) for value in raw]
    if not wanted:
        raise ValidationError({"fields": "Choose at least one field."})
    unknown = sorted(set(wanted) - set(FIELD_CATALOGUE))
    if unknown:
        raise ValidationError({"fields": "Only fields of the catalogue may be requested."})
    # The catalogue's order, without repeats: the dataset's columns do not depend on the form's order.
    return [name for name in FIELD_CATALOGUE if name in wanted]


def request_submit(
    *,
    actor: Any,
    title: str,
    purpose: str,
    tier: str,
    fields: Sequence[str],
    dua_reference: str = "",
    condition_codes: Sequence[str] = (),
    age_min: int | None = None,
    age_max: int | None = None,
    encounters_from: datetime.date | None = None,
    encounters_to: datetime.date | None = None,
    sex: str = "",
    k: int | None = None,
    max_suppression: float | None = None,
    date_shift: bool = False,
) -> DatasetRequest:
    """Submit a dataset request. Researchers only (PermissionDenied otherwise).

    Raises ``ValidationError`` keyed by field name: the limited tier needs a data-use agreement
    reference and Safe Harbor refuses one (it would suggest a release the tier does not make);
    date shifting is for the limited tier (Safe Harbor keeps years only); codes and fields are checked
    against their formats and the catalogue.
    """
    if not has_capability(actor, Capability.REQUEST_DATASET):
        raise PermissionDenied("Your role does not allow this.")
    dua_reference = dua_reference.strip()
    errors: dict[str, str] = {}
    if tier == DatasetRequest.Tier.LIMITED and not dua_reference:
        errors["dua_reference"] = "A limited data set needs a data-use agreement reference."
    if tier == DatasetRequest.Tier.SAFE_HARBOR and dua_reference:
        errors["dua_reference"] = "A data-use agreement reference is only for the limited tier."
    if tier == DatasetRequest.Tier.SAFE_HARBOR and date_shift:
        errors["date_shift"] = "Safe Harbor keeps years only; date shifting is for the limited tier."
    if errors:
        raise ValidationError(errors)
    request = DatasetRequest(
        researcher=actor,
        title=title.strip(),
        purpose=purpose.strip(),
        tier=tier,
        dua_reference=dua_reference,
        condition_codes=_condition_codes(condition_codes),
        age_min=age_min,
        age_max=age_max,
        encounters_from=encounters_from,
        encounters_to=encounters_to,
        sex=sex,
        fields=_fields(fields),
        date_shift=date_shift,
    )
    if k is not None:
        request.k = k
    if max_suppression is not None:
        request.max_suppression = max_suppression
    # The ordering checks first, under the field's name (the constraints would say "__all__").
    if request.age_min is not None and request.age_max is not None and request.age_min > request.age_max:
        raise ValidationError({"age_max": "The age band's upper bound is below its lower bound."})
    if request.encounters_from and request.encounters_to and request.encounters_from > request.encounters_to:
        raise ValidationError({"encounters_to": "The date range ends before it starts."})
    request.full_clean()
    with transaction.atomic():
        request.save()
    logger.info("Dataset request %s submitted by user %s (tier %s)", request.pk, actor.pk, request.tier)
    return request


def request_decide(*, actor: Any, request_id: int, approve: bool, note: str = "") -> DatasetRequest:
    """Approve or reject a submitted request. Compliance only (PermissionDenied otherwise).

    A researcher never approves their own request (even if a role change gave them the capability),
    and only a submitted request is decided: deciding twice is a ``ValidationError`` and changes
    nothing. The row is locked while it is decided, so two officers cannot both decide it.
    """
    if not has_capability(actor, Capability.APPROVE_DATASET):
        raise PermissionDenied("Your role does not allow this.")
    with transaction.atomic():
        request = DatasetRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None:
            raise RequestNotFound
        if request.researcher_id == actor.pk:
            raise PermissionDenied("A request is decided by someone other than its researcher.")
        if request.status != DatasetRequest.Status.SUBMITTED:
            raise ValidationError({"status": "Only a submitted request can be decided."})
        request.status = DatasetRequest.Status.APPROVED if approve else DatasetRequest.Status.REJECTED
        request.decided_by = actor
        request.decided_at = timezone.now()
        request.decision_note = note.strip()
        request.full_clean()
        request.save(update_fields=["status", "decided_by", "decided_at", "decision_note", "updated_at"])
    logger.info("Dataset request %s %s by user %s", request.pk, request.status, actor.pk)
    return request
