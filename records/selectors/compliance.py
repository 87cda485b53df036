"""What the compliance admin shows of patients: their MRN beside audit rows, read on the read path."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from accounts.roles import Capability, DataCategory, has_capability
from records.models import Patient
from records.permissions import AccessDecision
from records.selectors.access import AccessRefused, _record

# Who reads them: the compliance officer, reviewing the trail (not for care, not for registration).
AUDIT_REVIEW_PURPOSE = "compliance"
AUDIT_REVIEW_EXPLANATION = "audit_review"


def patient_mrns_for_audit(*, actor: Any, patient_ids: Iterable[int | None], view: str) -> dict[int, str]:
    """The MRNs of ``patient_ids`` for one page of an audit table, by patient id.

    For the roles that enter the admin and read the trail (``admin_site`` and ``view_audit``). One
    access event per patient shown (demographics, action ``list``, purpose ``compliance``), all
    written in one call before anything is decrypted, so a patient's access report shows that a
    compliance officer saw their MRN. One query for the MRNs whatever the page's length; only the
    MRN column (and the row identity it is bound to) is loaded and decrypted. Patients that no
    longer exist are left out.
    """
    if not (has_capability(actor, Capability.ADMIN_SITE) and has_capability(actor, Capability.VIEW_AUDIT)):
        raise AccessRefused(AccessDecision.forbidden("role_cannot_review_audit"))
    ids = sorted({pk for pk in patient_ids if pk is not None})
    if not ids:
        return {}
    existing = list(Patient.objects.filter(pk__in=ids).only("id", "row_uid", "mrn").order_by("id"))
    _record(
        actor=actor,
        patient_ids=[p.pk for p in existing],
        category=DataCategory.DEMOGRAPHICS,
        action="list",
        purpose=AUDIT_REVIEW_PURPOSE,
        explanation=AUDIT_REVIEW_EXPLANATION,
        detail={"list": "audit_admin", "view": view},
    )
    return {p.pk: p.mrn for p in existing}
