"""Exporting a record (issue 12): who may (physicians on the care team only; never through a
break-the-glass grant), what is recorded (an access event listing every section, a disclosure naming the
recipient and purpose, in one transaction: no event, no data), one query per section whatever the
record's size, the download's headers and file name, the command's refusals, and no patient data in
any message, file name, URL or log line."""

from __future__ import annotations

import datetime
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.roles import Capability, Role, roles_with
from audit.models import AccessEvent
from exchange.fhir.export import export_patient
from exchange.fhir.mapping import RESULT_COUNT_EXTENSION, FieldProblem, extract
from records.models import (
    Allergy,
    BreakGlassGrant,
    Condition,
    DiagnosticReport,
    Encounter,
    ImagingStudy,
    Immunization,
    Medication,
    Observation,
    Patient,
    Procedure,
)
from records.selectors import AccessNotRecorded, AccessRefused
from records.selectors.export import EXPORT_CATEGORIES, ExportRequestInvalid, record_for_export
from records.services import imported_entry_create
from records.signals import disclosure_made
from tests.conftest import make_step_up_stale
from tests.factories import PatientFactory, assign

pytestmark = pytest.mark.django_db

NAME = "Zebulon"
SURNAME = "Quixotic-Phi"
MRN = "EXP-000123"


@pytest.fixture
def patient() -> Patient:
    return PatientFactory(given_name=NAME, family_name=SURNAME, mrn=MRN)


def _export(actor: User, patient: Patient, **kwargs: Any) -> dict[str, Any]:
    options = {"purpose": "continuity_of_care", "recipient": "St. Elsewhere Hospital", **kwargs}
    return export_patient(actor=actor, patient_id=patient.pk, **options)


def _disclosures(patient: Patient) -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(patient_id=patient.pk, action="disclose"))


def _exports(patient: Patient) -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(patient_id=patient.pk, action="export"))


def _add_rows(importer: User, patient: Patient, n: int) -> None:
    """``n`` rows of every exported kind, one encounter each, through the import write path."""
    now = timezone.now()
    for i in range(n):
        at = now - datetime.timedelta(days=i + 1)
        source = f"row-{patient.pk}-{i}"
        encounter = imported_entry_create(
            actor=importer,
            entry=Encounter(
                patient=patient, source_id=f"{source}-e", kind="ambulatory", status="finished", starts_at=at
            ),
        )
        common = {"patient": patient, "encounter": encounter}
        for row in (
            Condition(**common, source_id=f"{source}-c", code="44054006", display="Diabetes", recorded_at=at),
            Observation(
                **common,
                source_id=f"{source}-o",
                category="vital-signs",
                loinc_code="8867-4",
                display="Heart rate",
                value="72",
                unit="/min",
                effective_at=at,
            ),
            DiagnosticReport(**common, source_id=f"{source}-r", code="57698-3", display="Lipid panel", effective_at=at),
            Medication(**common, source_id=f"{source}-m", code="860975", display="Metformin", prescribed_at=at),
            Procedure(**common, source_id=f"{source}-p", code="430193006", display="Reconciliation", performed_at=at),
            Immunization(**common, source_id=f"{source}-i", code="140", display="Influenza", occurred_at=at),
            ImagingStudy(**common, source_id=f"{source}-s", study_uid="1.2.3", modality="DX", started_at=at),
            Allergy(
                patient=patient, source_id=f"{source}-a", substance=f"Peanut {i}", code="sct:91935009", recorded_at=at
            ),
        ):
            imported_entry_create(actor=importer, entry=row)


# --- Policy -----------------------------------------------------------------------------------------


def test_a_physician_on_the_care_team_exports_the_record(physician: User, patient: Patient) -> None:
    assign(physician, patient)
    bundle = _export(physician, patient)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    (resource,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert resource["name"][0]["family"] == SURNAME
    assert resource["identifier"][0]["value"] == MRN


@pytest.mark.parametrize(
    ("persona_name", "status"),
    [
        ("physician", 404),  # a physician, but not on this patient's care team
        ("nurse", 403),
        ("front_desk", 403),
        ("researcher", 403),
        ("compliance", 403),
        ("radiology", 403),
        ("ems", 403),
        ("patient_user", 403),
    ],
)
def test_everyone_else_is_refused_and_nothing_is_recorded(
    request: pytest.FixtureRequest, persona_name: str, status: int, patient: Patient
) -> None:
    user = request.getfixturevalue(persona_name)
    if persona_name == "nurse":
        assign(user, patient, "nurse")  # even on the care team: the nurse's role may not export
    with pytest.raises(AccessRefused) as refused:
        _export(user, patient)
    assert refused.value.status == status
    assert not AccessEvent.objects.filter(patient_id=patient.pk).exists()


def test_a_break_the_glass_grant_does_not_allow_an_export(physician: User, patient: Patient) -> None:
    _grant(physician, patient)
    with pytest.raises(AccessRefused) as refused:
        _export(physician, patient)
    assert (refused.value.status, refused.value.explanation) == (403, "break_glass_does_not_allow_export")
    assert not _disclosures(patient)


def test_an_ended_care_assignment_no_longer_allows_an_export(physician: User, patient: Patient) -> None:
    assignment = assign(physician, patient)
    type(assignment).objects.filter(pk=assignment.pk).update(ends_at=timezone.now() - datetime.timedelta(minutes=1))
    with pytest.raises(AccessRefused):
        _export(physician, patient)


@pytest.mark.parametrize(("purpose", "recipient"), [("marketing", "Someone"), ("legal", ""), ("legal", "x" * 201)])
def test_an_unknown_purpose_or_a_missing_recipient_is_refused_before_any_read(
    physician: User, patient: Patient, purpose: str, recipient: str
) -> None:
    assign(physician, patient)
    with pytest.raises(ExportRequestInvalid):
        _export(physician, patient, purpose=purpose, recipient=recipient)
    assert not AccessEvent.objects.filter(patient_id=patient.pk).exists()


# --- What is recorded, and failing closed -------------------------------------------------------------


def test_the_export_is_an_access_of_every_section_and_a_disclosure_to_the_recipient(
    physician: User, patient: Patient
) -> None:
    assign(physician, patient)
    _export(physician, patient, purpose="patient_request", recipient="The patient's new GP")
    (access,) = _exports(patient)
    assert sorted(access.sections) == sorted(str(c) for c in EXPORT_CATEGORIES)
    assert (access.actor_id, access.purpose, access.explanation) == (physician.pk, "patient_request", "care_team")
    (disclosure,) = _disclosures(patient)
    assert (disclosure.actor_id, disclosure.purpose) == (physician.pk, "patient_request")
    assert disclosure.detail == {"recipient": "The patient's new GP"}


def _never_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr("records.selectors.export._read", lambda p: calls.append(p.pk))
    return calls


def test_nothing_is_read_when_the_access_event_cannot_be_written(
    physician: User, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assign(physician, patient)
    reads = _never_read(monkeypatch)

    def broken(*args: object, **kwargs: object) -> None:
        raise DatabaseError("audit table unavailable")

    monkeypatch.setattr("audit.services.insert_unsealed", broken)
    with pytest.raises(AccessNotRecorded):
        _export(physician, patient)
    assert reads == []
    assert not AccessEvent.objects.filter(patient_id=patient.pk).exists()


def test_nothing_is_read_and_no_access_stays_recorded_when_the_disclosure_cannot_be_written(
    physician: User, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assign(physician, patient)
    reads = _never_read(monkeypatch)

    def broken(sender: object, **kwargs: object) -> None:
        raise DatabaseError("disclosure table unavailable")

    disclosure_made.connect(broken, dispatch_uid="test.broken_disclosure")
    try:
        with pytest.raises(AccessNotRecorded):
            _export(physician, patient)
    finally:
        disclosure_made.disconnect(dispatch_uid="test.broken_disclosure")
    assert reads == []
    # The access event was written first, in the same transaction: rolled back with the disclosure.
    assert not AccessEvent.objects.filter(patient_id=patient.pk).exists()


def test_an_export_that_does_not_validate_is_raised_and_its_disclosure_undone(
    physician: User, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exchange.fhir import export

    assign(physician, patient)
    monkeypatch.setattr(
        export, "patient_resource", lambda p: {"resourceType": "Patient", "id": str(p.uid), "gender": 7}
    )
    with pytest.raises(export.ExportInvalid) as invalid:
        _export(physician, patient)
    assert SURNAME not in str(invalid.value)
    assert MRN not in str(invalid.value)
    assert not _disclosures(patient)


# --- Bounded reads ----------------------------------------------------------------------------------------


SAVEPOINTS = 4  # the test's transaction.atomic and the export's, each a savepoint and its release
POLICY = 1  # chart_access: the relationships and the patient's row (sealed) in one query
EVENTS = 2  # the access event and the disclosure event
SECTIONS = 9  # one per kind of row: encounters ... imaging studies (the patient's row came with the policy)
RULES = 5  # the inline anomaly rules, when they look further (none for a care-team access today)


def _queries(physician: User, patient: Patient) -> int:
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        record_for_export(actor=physician, patient_id=patient.pk, purpose="legal", recipient="Court")
    return len(queries)


def test_one_query_per_section_whatever_the_size_of_the_record(physician: User, front_desk: User) -> None:
    small, large = PatientFactory(), PatientFactory()
    _add_rows(front_desk, small, 2)
    _add_rows(front_desk, large, 40)
    assign(physician, small)
    assign(physician, large)
    few, many = _queries(physician, small), _queries(physician, large)
    assert few == many
    record = record_for_export(actor=physician, patient_id=large.pk, purpose="legal", recipient="Court")
    assert (len(record.encounters), len(record.observations), len(record.allergies)) == (40, 40, 40)
    assert many <= SAVEPOINTS + POLICY + EVENTS + SECTIONS + RULES


# --- The download ------------------------------------------------------------------------------------------


def _url(patient: Patient) -> str:
    return reverse("exchange:export_record", args=[patient.pk])


FORM = {"purpose": "continuity_of_care", "recipient": "St. Elsewhere Hospital"}


def test_the_download_is_an_attachment_named_without_the_patient_and_never_cached(
    client_for: Callable[[User], Client], physician: User, patient: Patient, caplog: pytest.LogCaptureFixture
) -> None:
    assign(physician, patient)
    client = client_for(physician)
    with caplog.at_level(logging.DEBUG):
        response = client.post(_url(patient), FORM)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="record-')
    assert disposition.endswith('.fhir.json"')
    for secret in (NAME, SURNAME, MRN):
        assert secret not in disposition
        assert secret not in caplog.text
        assert secret not in _url(patient)
    assert "no-store" in response["Cache-Control"]
    bundle = json.loads(response.content)
    assert bundle["type"] == "collection"
    assert _disclosures(patient)[0].detail == {"recipient": "St. Elsewhere Hospital"}


def test_two_downloads_get_different_file_names(
    client_for: Callable[[User], Client], physician: User, patient: Patient
) -> None:
    assign(physician, patient)
    client = client_for(physician)
    names = {client.post(_url(patient), FORM)["Content-Disposition"] for _ in range(2)}
    assert len(names) == 2


def test_the_form_is_shown_on_get_and_a_missing_recipient_is_a_400_with_nothing_recorded(
    client_for: Callable[[User], Client], physician: User, patient: Patient
) -> None:
    assign(physician, patient)
    client = client_for(physician)
    page = client.get(_url(patient))
    assert page.status_code == 200
    assert b'name="recipient"' in page.content
    assert SURNAME.encode() not in page.content
    assert client.post(_url(patient), {"purpose": "legal", "recipient": ""}).status_code == 400
    assert not AccessEvent.objects.filter(patient_id=patient.pk, action__in=("export", "disclose")).exists()


def _grant(user: User, patient: Patient) -> BreakGlassGrant:
    now = timezone.now()
    return BreakGlassGrant.objects.create(
        user=user,
        patient=patient,
        reason=BreakGlassGrant.Reason.EMERGENCY_TREATMENT,
        explanation="Unconscious in the emergency department",
        granted_at=now - datetime.timedelta(minutes=5),
        expires_at=now + datetime.timedelta(minutes=55),
    )


def test_the_chart_offers_the_download_to_those_who_may_use_it(
    client_for: Callable[[User], Client], physician: User, nurse: User, patient: Patient, make_persona: Any
) -> None:
    assign(physician, patient)
    assign(nurse, patient, "nurse")
    on_call = make_persona(Role.PHYSICIAN, username="on.call")
    _grant(on_call, patient)
    chart = reverse("records:chart", args=[patient.pk])
    assert b'data-testid="export-fhir"' in client_for(physician).get(chart).content
    assert b'data-testid="export-fhir"' not in client_for(nurse).get(chart).content
    # A physician in the chart through a break-the-glass grant may read it, not send it away.
    emergency_chart = client_for(on_call).get(chart)
    assert emergency_chart.status_code == 200
    assert b'data-testid="export-fhir"' not in emergency_chart.content
    assert client_for(on_call).post(_url(patient), FORM).status_code == 403


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_download_asks_for_a_fresh_code(
    client_for: Callable[[User], Client], physician: User, patient: Patient, method: str
) -> None:
    assign(physician, patient)
    client = make_step_up_stale(client_for(physician))
    response = getattr(client, method)(_url(patient), FORM if method == "post" else None)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:step_up"))
    assert not _disclosures(patient)


# Roles that can be put on a care team (records.services.care_assignment_create).
CARE_TEAM_ROLES = {Role.PHYSICIAN: "attending", Role.NURSE: "nurse"}


@pytest.mark.parametrize("persona", list(Role), indirect=True)
@pytest.mark.parametrize("related", [True, False], ids=["on_the_care_team", "no_relationship"])
def test_the_download_answers_every_role_as_the_role_table_says(
    client_for: Callable[[User], Client], persona: User, related: bool, patient: Patient
) -> None:
    """From accounts/roles.py alone: no export_record -> 403 (GET and POST); the capability without a
    relationship -> the chart's 404 (another patient's id in the URL); both -> the form and the file."""
    role = Role(persona.role)
    if related and role in CARE_TEAM_ROLES:
        assign(persona, patient, CARE_TEAM_ROLES[role])
    allowed = role in roles_with(Capability.EXPORT_RECORD)
    expected = (200 if related else 404) if allowed else 403
    client = client_for(persona)
    assert client.get(_url(patient)).status_code == expected
    assert client.post(_url(patient), FORM).status_code == expected
    assert AccessEvent.objects.filter(patient_id=patient.pk, action="disclose").exists() == (expected == 200)


def test_only_physicians_hold_export_record() -> None:
    assert roles_with(Capability.EXPORT_RECORD) == [Role.PHYSICIAN]


def test_the_download_of_a_patient_that_does_not_exist_is_404(
    client_for: Callable[[User], Client], physician: User
) -> None:
    assert client_for(physician).post(reverse("exchange:export_record", args=[999_999]), FORM).status_code == 404


# --- The command -------------------------------------------------------------------------------------------


def _command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_fhir", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_writes_the_bundle_to_a_file_readable_by_its_owner_only(
    physician: User, patient: Patient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assign(physician, patient)
    target = tmp_path / "out.fhir.json"
    with caplog.at_level(logging.DEBUG):
        out, err = _command("--patient", MRN, "--actor", physician.username, "--out", str(target), "--recipient", "GP")
    assert json.loads(target.read_text())["type"] == "collection"
    assert target.stat().st_mode & 0o077 == 0
    for secret in (NAME, SURNAME):
        assert secret not in out + err + caplog.text
    assert _disclosures(patient)[0].detail == {"recipient": "GP"}


def test_the_command_writes_to_standard_output_without_out(physician: User, patient: Patient) -> None:
    assign(physician, patient)
    out, _ = _command("--patient", MRN, "--actor", physician.username, "--recipient", "GP", "--purpose", "legal")
    assert json.loads(out)["resourceType"] == "Bundle"
    assert _disclosures(patient)[0].purpose == "legal"


def test_the_command_refuses_to_overwrite_a_file_unless_forced(
    physician: User, patient: Patient, tmp_path: Path
) -> None:
    assign(physician, patient)
    target = tmp_path / "out.json"
    target.write_text("keep me")
    with pytest.raises(CommandError, match="--force"):
        _command("--patient", MRN, "--actor", physician.username, "--out", str(target), "--recipient", "GP")
    assert target.read_text() == "keep me"
    assert not _disclosures(patient)
    _command("--patient", MRN, "--actor", physician.username, "--out", str(target), "--recipient", "GP", "--force")
    assert json.loads(target.read_text())["type"] == "collection"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--patient", "NO-SUCH-MRN", "--actor", "{physician}", "--recipient", "GP"), "No patient"),
        (("--patient", MRN, "--actor", "nobody", "--recipient", "GP"), "export_record"),
        (("--patient", MRN, "--actor", "{nurse}", "--recipient", "GP"), "export_record"),
        (("--patient", MRN, "--actor", "{stranger}", "--recipient", "GP"), "may not export this patient"),
        (("--patient", MRN, "--actor", "{physician}"), "--recipient is required"),
    ],
)
def test_the_command_refuses_with_a_message_naming_no_one(
    physician: User,
    nurse: User,
    make_persona: Callable[..., User],
    patient: Patient,
    args: tuple[str, ...],
    message: str,
) -> None:
    assign(physician, patient)
    names = {
        "physician": physician.username,
        "nurse": nurse.username,
        "stranger": make_persona(Role.PHYSICIAN, username="stranger").username,
    }
    with pytest.raises(CommandError, match=message) as refused:
        _command(*(a.format(**names) for a in args))
    for secret in (NAME, SURNAME, MRN):
        assert secret not in str(refused.value)
    assert not _disclosures(patient)


# --- A report's number of results ------------------------------------------------------------------------


def _report(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": "r",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "57698-3"}], "text": "Lipid panel"},
        "subject": {"reference": "urn:uuid:p"},
        "effectiveDateTime": "2020-05-01T10:00:00+00:00",
    }
    resource.update(changes)
    return resource


def test_a_reports_number_of_results_travels_as_an_extension_when_its_references_do_not() -> None:
    extension = [{"url": RESULT_COUNT_EXTENSION, "valueUnsignedInt": 4}]
    assert extract(_report(extension=extension)).fields["result_count"] == 4
    # Real references win: they are what a source system sends.
    referenced = _report(extension=extension, result=[{"reference": "urn:uuid:o"}])
    assert extract(referenced).fields["result_count"] == 1
    assert extract(_report()).fields["result_count"] == 0


@pytest.mark.parametrize("bad", [-1, "4", True, 10**9])
def test_a_result_count_extension_that_is_not_a_count_is_refused_by_path(bad: object) -> None:
    with pytest.raises(FieldProblem) as problem:
        extract(_report(extension=[{"url": "x:other"}, {"url": RESULT_COUNT_EXTENSION, "valueUnsignedInt": bad}]))
    assert problem.value.path == "extension.1.valueUnsignedInt"
