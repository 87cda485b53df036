"""The request workflow: who may submit, who may decide, and what a request may say."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from research.models import DatasetRequest
from research.services import request_decide, request_submit

pytestmark = pytest.mark.django_db

BASE = {
    "title": "Asthma in adults",
    "purpose": "Incidence by age band.",
    "fields": ["demographics_generalised", "conditions"],
}


def test_researcher_submits_a_safe_harbor_request(researcher):
    request = request_submit(actor=researcher, tier="safe_harbor", condition_codes=["j45.909", "195967001"], **BASE)
    assert request.status == DatasetRequest.Status.SUBMITTED
    assert request.condition_codes == ["J45.909", "195967001"]
    assert request.k == 5
    # The change history records the request (no patient data in it).
    assert LogEntry.objects.get_for_object(request).count() == 1


def test_limited_tier_needs_a_data_use_agreement(researcher):
    with pytest.raises(ValidationError) as caught:
        request_submit(actor=researcher, tier="limited", **BASE)
    assert "dua_reference" in caught.value.message_dict
    request = request_submit(actor=researcher, tier="limited", dua_reference="DUA-2026-007", **BASE)
    assert request.tier == "limited"


def test_safe_harbor_refuses_a_data_use_agreement_and_date_shifting(researcher):
    with pytest.raises(ValidationError) as caught:
        request_submit(actor=researcher, tier="safe_harbor", dua_reference="DUA-1", date_shift=True, **BASE)
    assert {"dua_reference", "date_shift"} <= set(caught.value.message_dict)


def test_the_database_refuses_a_limited_request_without_agreement(researcher):
    # The constraint holds even for a write that bypasses the service (admin, shell).
    with pytest.raises(IntegrityError), transaction.atomic():
        DatasetRequest.objects.create(researcher=researcher, tier="limited", **BASE)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fields": ["names"]}, "fields"),
        ({"fields": []}, "fields"),
        ({"condition_codes": ["diabetes; DROP TABLE"]}, "condition_codes"),
        ({"age_min": 60, "age_max": 40}, "age_max"),
        ({"k": 1}, "k"),
        ({"max_suppression": 0.9}, "max_suppression"),
        ({"tier": "everything"}, "tier"),
    ],
)
def test_invalid_requests_are_refused_with_the_field_named(researcher, change, field):
    values = {**BASE, "tier": "safe_harbor", **change}
    with pytest.raises(ValidationError) as caught:
        request_submit(actor=researcher, **values)
    assert field in caught.value.message_dict
    assert not DatasetRequest.objects.exists()


@pytest.mark.parametrize("role", ["physician", "compliance", "security", "front_desk", "patient_user"])
def test_only_researchers_submit(request, role):
    with pytest.raises(PermissionDenied):
        request_submit(actor=request.getfixturevalue(role), tier="safe_harbor", **BASE)


def test_compliance_approves_a_submitted_request_once(researcher, compliance):
    submitted = request_submit(actor=researcher, tier="safe_harbor", **BASE)
    decided = request_decide(actor=compliance, request_id=submitted.pk, approve=True, note="IRB ok")
    assert decided.status == DatasetRequest.Status.APPROVED
    assert decided.decided_by == compliance
    assert decided.decided_at is not None
    # The decision (status, decided_by) is in the change history.
    entries = LogEntry.objects.get_for_object(decided).order_by("timestamp", "pk")
    assert entries.count() == 2
    assert "approved" in str(entries.last().changes)
    with pytest.raises(ValidationError):
        request_decide(actor=compliance, request_id=submitted.pk, approve=False)
    submitted.refresh_from_db()
    assert submitted.status == DatasetRequest.Status.APPROVED


def test_compliance_rejects(researcher, compliance):
    submitted = request_submit(actor=researcher, tier="safe_harbor", **BASE)
    decided = request_decide(actor=compliance, request_id=submitted.pk, approve=False, note="No IRB approval")
    assert decided.status == DatasetRequest.Status.REJECTED


@pytest.mark.parametrize("role", ["researcher", "physician", "security"])
def test_only_compliance_decides(request, researcher, role):
    submitted = request_submit(actor=researcher, tier="safe_harbor", **BASE)
    with pytest.raises(PermissionDenied):
        request_decide(actor=request.getfixturevalue(role), request_id=submitted.pk, approve=True)
    submitted.refresh_from_db()
    assert submitted.status == DatasetRequest.Status.SUBMITTED


def test_a_researcher_cannot_approve_their_own_request_even_with_the_capability(researcher, monkeypatch):
    submitted = request_submit(actor=researcher, tier="safe_harbor", **BASE)
    # A misconfigured role table granting both capabilities still cannot let one person do both steps.
    monkeypatch.setattr("research.services.has_capability", lambda user, capability: True)
    with pytest.raises(PermissionDenied):
        request_decide(actor=researcher, request_id=submitted.pk, approve=True)
    submitted.refresh_from_db()
    assert submitted.status == DatasetRequest.Status.SUBMITTED
