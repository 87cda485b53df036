"""Which patients a partner may see, from its active data sharings (no patient data is read here)."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

from exchange.partners.models import DataSharing, Partner
from records.models import Encounter, Patient


def active_sharings(partner: Partner) -> QuerySet[DataSharing]:
    """The partner's sharings in force now."""
    now = timezone.now()
    return DataSharing.objects.filter(partner=partner, active_from__lte=now).filter(
        Q(active_until__isnull=True) | Q(active_until__gt=now)
    )


def shared_patient_ids(partner: Partner) -> QuerySet[Patient, int]:
    """Patients shared with the partner, directly or through a department they had an encounter in;
    a queryset of ids only (``values_list``), for the API's searches to filter on."""
    if not partner.is_active:
        return Patient.objects.none().values_list("pk", flat=True)
    sharings = active_sharings(partner)
    departments = sharings.filter(department__isnull=False).values("department_id")
    direct = sharings.filter(patient__isnull=False).values("patient_id")
    via_department = Encounter.objects.filter(department_id__in=departments).values("patient_id")
    return Patient.objects.filter(Q(pk__in=direct) | Q(pk__in=via_department)).values_list("pk", flat=True)


def partner_may_see_patient(partner: Partner, patient_id: int) -> bool:
    """True when an active sharing covers the patient: the API answers 404 otherwise (no existence leak)."""
    if not partner.is_active:
        return False
    sharings = active_sharings(partner)
    if sharings.filter(patient_id=patient_id).exists():
        return True
    departments = sharings.filter(department__isnull=False).values("department_id")
    return Encounter.objects.filter(patient_id=patient_id, department_id__in=departments).exists()


def sharing_purpose(partner: Partner, patient_id: int) -> str:
    """The purpose of the sharing that lets the partner see the patient (for the disclosure record);
    the patient's own sharing wins over a department's. Empty when none does."""
    sharings = active_sharings(partner).order_by("-active_from")
    direct = sharings.filter(patient_id=patient_id).values_list("purpose", flat=True).first()
    if direct:
        return str(direct)
    departments = Encounter.objects.filter(patient_id=patient_id).values("department_id")
    found = sharings.filter(department_id__in=departments).values_list("purpose", flat=True).first()
    return str(found or "")
