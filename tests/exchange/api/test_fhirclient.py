"""A real FHIR client against a live server: SMART on FHIR's Python client (``fhirclient``) reads the
partner API's CapabilityStatement, gets a token with a signed client assertion (SMART Backend
Services), then reads a shared patient and ``$everything``, as a partner's system would."""

from __future__ import annotations

from typing import Any

import pytest
from fhirclient import client as fhir
from fhirclient.models.bundle import Bundle
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient as FhirPatient
from joserfc.jwk import RSAKey

from accounts.models import User
from audit.models import AccessEvent
from exchange.partners.models import DataSharing, Partner
from exchange.partners.scopes import all_scopes
from tests.exchange.api.conftest import assertion
from tests.exchange.fhir.test_export import _add_rows
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_fhirclient_reads_a_shared_patient_and_everything(
    live_server: Any, partner: Partner, rsa_key: RSAKey, front_desk: User
) -> None:
    patient = PatientFactory(family_name="Livewire-Client")
    _add_rows(front_desk, patient, 3)
    partner.allowed_scopes = all_scopes()
    partner.rate_limit_per_minute = 100
    partner.save()
    DataSharing.objects.create(partner=partner, patient=patient, purpose=DataSharing.Purpose.TREATMENT)
    base = f"{live_server.url}/fhir/r4/"

    smart = fhir.FHIRClient(
        settings={
            "app_id": partner.client_id,
            "api_base": base,
            "scope": " ".join(all_scopes()),
            "jwt_token": assertion(rsa_key, aud=f"{live_server.url}/fhir/r4/auth/token"),
        }
    )
    smart.prepare()  # fetches /metadata and finds the token URL in its SMART security extension
    smart.authorize()  # client_credentials with the signed assertion
    assert smart.ready

    read = FhirPatient.read(str(patient.row_uid), smart.server)
    assert read.name[0].family == "Livewire-Client"

    everything = Bundle(smart.server.request_json(f"Patient/{patient.row_uid}/$everything"))
    kinds = sorted({entry.resource.resource_type for entry in everything.entry})
    assert kinds == ["AllergyIntolerance", "Condition", "MedicationRequest", "Observation", "Patient"]

    # Two to a page: the client follows the searchset's next links to the end.
    search = Observation.where(struct={"patient": f"Patient/{patient.row_uid}", "_count": "2"})
    found = list(search.perform_resources_iter(smart.server))
    assert len(found) == 3
    assert {o.subject.reference for o in found} == {f"Patient/{patient.row_uid}"}

    reads = AccessEvent.objects.filter(patient_id=patient.pk, action="partner_read").count()
    disclosures = AccessEvent.objects.filter(patient_id=patient.pk, action="disclose").count()
    assert reads == disclosures == 4, reads  # the patient, $everything, and the two pages of observations
