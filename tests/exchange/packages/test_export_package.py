"""``manage.py export_package``: a patient's record for a partner, signed by us and encrypted to the
partner; the read, the disclosure to the partner, the package row and the file are one transaction."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from joserfc import jwe, jws
from joserfc.jwk import ECKey, KeySet, RSAKey

from accounts.models import User
from audit.models import AccessEvent
from exchange import packages
from exchange.keys import hospital_keys
from exchange.models import Package
from exchange.partners.models import Partner
from records.models import Patient
from tests.exchange.packages.conftest import public
from tests.factories import PatientFactory, assign

pytestmark = pytest.mark.django_db

MRN = "PKG-000777"
SURNAME = "Ostrogoth-Pkg"


@pytest.fixture
def patient(physician: User) -> Patient:
    patient = PatientFactory(mrn=MRN, family_name=SURNAME)
    assign(physician, patient)
    return patient


def _export(tmp_path: Path, **options: object) -> tuple[Path, str]:
    out = tmp_path / "package.jwe"
    err = io.StringIO()
    arguments = {"patient": MRN, "partner": "Northside Clinic", "actor": "physician", "out": str(out), **options}
    call_command("export_package", stderr=err, stdout=io.StringIO(), **arguments)
    return out, err.getvalue()


def test_the_partner_opens_the_package_and_finds_the_patients_bundle_signed_by_us(
    tmp_path: Path, physician: User, patient: Patient, partner: Partner, partner_enc: RSAKey
) -> None:
    out, message = _export(tmp_path)

    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert SURNAME not in message
    assert MRN not in message
    data = out.read_bytes()
    assert SURNAME.encode() not in data  # encrypted
    inner = jwe.decrypt_compact(data, partner_enc, algorithms=["RSA-OAEP-256", "A256GCM"]).plaintext or b""
    ours = KeySet.import_key_set(hospital_keys().public_jwks())
    claims = json.loads(jws.deserialize_compact(inner, ours, algorithms=["ES384"]).payload)
    patients = [e["resource"] for e in claims["bundle"]["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert [p["name"][0]["family"] for p in patients] == [SURNAME]
    assert claims["aud"] == partner.client_id
    assert claims["sha256"] == packages.bundle_digest(claims["bundle"])
    row = Package.objects.get()
    assert (row.direction, row.partner_id, row.patient_id, row.digest) == (
        "out",
        partner.pk,
        patient.pk,
        claims["sha256"],
    )
    (disclosure,) = AccessEvent.objects.filter(patient_id=patient.pk, action="disclose")
    assert disclosure.detail == {"recipient": partner.name}
    assert disclosure.actor_id == physician.pk
    assert AccessEvent.objects.filter(patient_id=patient.pk, action="export").count() == 1


def test_refusals_write_nothing_and_name_no_patient(
    tmp_path: Path, physician: User, nurse: User, patient: Patient, partner: Partner, partner_sig: ECKey
) -> None:
    def refused(match: str, **options: object) -> None:
        with pytest.raises(CommandError, match=match) as raised:
            _export(tmp_path, **options)
        assert SURNAME not in str(raised.value)
        assert MRN not in str(raised.value)

    refused("no registered partner", partner="Nobody Hospital")
    refused("may export records", actor="nurse")
    refused("No patient", patient="PKG-NOPE")
    refused("may not export", patient=PatientFactory(mrn="PKG-OTHER").mrn)  # not on the care team
    partner.jwks = {"keys": [public(partner_sig)]}  # no encryption key
    partner.save()
    refused("encryption key")
    partner.status = Partner.Status.SUSPENDED
    partner.save()
    refused("suspended")

    assert not Package.objects.exists()
    assert not AccessEvent.objects.filter(action__in=["disclose", "export"]).exists()
    assert not (tmp_path / "package.jwe").exists()


def test_an_existing_file_is_kept_unless_forced_and_a_failed_write_undoes_the_disclosure(
    tmp_path: Path, physician: User, patient: Patient, partner: Partner
) -> None:
    out = tmp_path / "package.jwe"
    out.write_text("keep me")
    with pytest.raises(CommandError, match="exists"):
        _export(tmp_path)
    assert out.read_text() == "keep me"
    _export(tmp_path, force=True)
    assert out.read_text() != "keep me"
    assert Package.objects.count() == 1

    with pytest.raises(CommandError, match="could not be written"):
        _export(tmp_path, out=str(tmp_path / "missing-folder" / "package.jwe"))
    assert Package.objects.count() == 1  # the failed one left no package row
    assert AccessEvent.objects.filter(patient_id=patient.pk, action="disclose").count() == 1
