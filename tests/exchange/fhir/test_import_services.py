"""records/services/imports.py: the import write path refuses what it must, and names the importer."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.models import User
from audit.models import ChangeEvent
from records.crypto import source_index
from records.models import ClinicalNote, Condition, Encounter, Patient
from records.services import DuplicatePatient, imported_entry_create, imported_patient_create

pytestmark = pytest.mark.django_db

BORN = datetime.date(1980, 1, 1)


def _patient(actor: User, **changes: object) -> Patient:
    fields: dict[str, object] = {
        "source_id": source_index("Patient", "a"),
        "mrn": "IMP-1",
        "given_name": "Ada",
        "family_name": "Byron",
        "birth_date": BORN,
        "sex": "female",
    }
    fields.update(changes)
    return imported_patient_create(actor=actor, **fields)  # type: ignore[arg-type]


def test_a_role_without_import_records_is_refused(physician: User) -> None:
    with pytest.raises(PermissionDenied):
        _patient(physician)
    assert not Patient.objects.exists()


def test_import_refuses_unknown_fields_a_missing_source_and_a_second_mrn(front_desk: User) -> None:
    with pytest.raises(TypeError):
        _patient(front_desk, shoe_size="9")
    with pytest.raises(ValidationError):
        _patient(front_desk, source_id="")
    _patient(front_desk, city="Leominster")
    with pytest.raises(DuplicatePatient):
        _patient(front_desk, source_id=source_index("Patient", "b"))
    assert Patient.objects.count() == 1


def test_imported_rows_need_a_source_and_an_imported_kind(front_desk: User) -> None:
    patient = _patient(front_desk)
    now = timezone.now()
    with pytest.raises(ValidationError):
        imported_entry_create(actor=front_desk, entry=Condition(patient=patient, display="x", recorded_at=now))
    note = ClinicalNote(patient=patient, kind="progress", author=front_desk, text="x", signed_at=now)
    with pytest.raises(TypeError):
        imported_entry_create(actor=front_desk, entry=note)  # type: ignore[type-var]
    condition = imported_entry_create(
        actor=front_desk,
        entry=Condition(patient=patient, code="44054006", display="Diabetes", recorded_at=now, source_id="s"),
    )
    event = ChangeEvent.objects.get(object_id=condition.pk, category="conditions")
    assert (event.action, event.actor_id) == ("import", front_desk.pk)
    assert "Diabetes" not in repr(event.__dict__)


def test_a_row_cannot_be_filed_under_another_patients_encounter(front_desk: User) -> None:
    mine = _patient(front_desk)
    other = _patient(front_desk, source_id=source_index("Patient", "b"), mrn="IMP-2", family_name="Other")
    theirs = imported_entry_create(
        actor=front_desk,
        entry=Encounter(patient=other, kind="ambulatory", starts_at=timezone.now(), source_id="e"),
    )
    with pytest.raises(ValidationError):
        imported_entry_create(
            actor=front_desk,
            entry=Condition(patient=mine, encounter=theirs, display="x", recorded_at=timezone.now(), source_id="c"),
        )
    assert not Condition.objects.exists()
