"""The partner API's resource endpoints: reads of shared patients only, every read an access event and a
disclosure written before anything is decrypted, searches paged, errors as OperationOutcomes, and the
token's scopes deciding what ``$everything`` returns."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from joserfc.jwk import RSAKey

from accounts.models import User
from audit.models import AccessEvent, AuthEventRecord
from exchange.fhir.validate import _schema
from exchange.partners.models import DataSharing, Partner
from exchange.partners.scopes import all_scopes
from healthcrypt.fields import Sealed
from records.models import Allergy, Condition, Medication, Observation, Patient
from records.services import imported_entries_create
from records.signals import disclosure_made
from tests.exchange.api.conftest import TokenCall, assertion
from tests.exchange.fhir.test_export import _add_rows
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

BASE = "/fhir/r4"
MRN = "API-000321"
SURNAME = "Quillfeather-Api"


@pytest.fixture
def shared(front_desk: User, partner: Partner) -> Patient:
    patient = PatientFactory(mrn=MRN, family_name=SURNAME)
    _add_rows(front_desk, patient, 5)
    DataSharing.objects.create(partner=partner, patient=patient, purpose=DataSharing.Purpose.TREATMENT)
    return patient


@pytest.fixture
def token(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> Callable[..., str]:
    def make(scope: str = " ".join(all_scopes())) -> str:
        response = request_token(assertion(rsa_key), scope=scope)
        assert response.status_code == 200, response.content
        return str(response.json()["access_token"])

    partner.allowed_scopes = all_scopes()
    partner.rate_limit_per_minute = 1000
    partner.save()
    return make


def get(path: str, bearer: str, **params: Any) -> Any:
    return Client().get(f"{BASE}/{path}", params, HTTP_AUTHORIZATION=f"Bearer {bearer}")


def outcome(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["diagnostics"])


def test_a_shared_patient_is_read_by_its_random_id_and_the_read_is_a_disclosure(
    shared: Patient, partner: Partner, token: Callable[..., str]
) -> None:
    response = get(f"Patient/{shared.row_uid}", token())

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    assert "no-store" in response["Cache-Control"]
    patient = response.json()
    assert (patient["resourceType"], patient["id"], patient["name"][0]["family"]) == (
        "Patient",
        str(shared.row_uid),
        SURNAME,
    )
    (read,) = AccessEvent.objects.filter(patient_id=shared.pk, action="partner_read")
    assert (read.actor_id, read.sections, read.explanation, read.purpose) == (
        None,
        ["demographics"],
        "data_sharing",
        "treatment",
    )
    assert read.detail == {"partner_id": partner.pk, "resources": ["Patient"]}
    (disclosure,) = AccessEvent.objects.filter(patient_id=shared.pk, action="disclose")
    assert disclosure.detail == {"recipient": "Northside Clinic"}


@pytest.mark.parametrize("kind", ["not shared", "unknown", "database key", "garbage"])
def test_a_patient_not_shared_is_a_404_like_one_that_does_not_exist(
    kind: str, shared: Patient, token: Callable[..., str]
) -> None:
    other = PatientFactory()
    patient_id = {
        "not shared": str(other.row_uid),
        "unknown": "0b6f1d3e-1111-4c4c-9d9d-123456789abc",
        "database key": str(shared.pk),
        "garbage": "..%2F..%2Fadmin",
    }[kind]
    bearer = token()
    assert outcome(get(f"Patient/{patient_id}", bearer), 404) == "Not found."
    assert outcome(get("Observation", bearer, patient=f"Patient/{patient_id}"), 404) == "Not found."
    if kind == "garbage":  # not even a route: the API's 404 all the same, and no read was attempted
        return
    assert not AccessEvent.objects.filter(action__in=["partner_read", "disclose"]).exists()
    refusals = AuthEventRecord.objects.filter(event="partner_api_refused", detail__reason="not_shared")
    assert refusals.count() == 2


def test_an_unknown_path_under_the_api_is_an_operation_outcome_404(token: Callable[..., str]) -> None:
    assert outcome(get("Encounter", token()), 404) == "Not found."
    assert outcome(Client().get(f"{BASE}/nothing/here"), 404) == "Not found."


def test_a_sharing_that_ended_closes_the_patient_again(
    shared: Patient, partner: Partner, token: Callable[..., str]
) -> None:
    bearer = token()
    assert get(f"Patient/{shared.row_uid}", bearer).status_code == 200
    DataSharing.objects.filter(partner=partner).delete()
    outcome(get(f"Patient/{shared.row_uid}", bearer), 404)


def test_identifier_search_finds_a_shared_patient_and_says_nothing_of_others(
    shared: Patient, token: Callable[..., str]
) -> None:
    bearer = token()
    found = get("Patient", bearer, identifier=f"urn:healthcrypt:mrn|{MRN}").json()
    assert (found["type"], found["total"]) == ("searchset", 1)
    assert found["entry"][0]["resource"]["id"] == str(shared.row_uid)
    assert found["entry"][0]["fullUrl"] == f"http://testserver{BASE}/Patient/{shared.row_uid}"

    PatientFactory(mrn="API-OTHER")
    for mrn in ("API-OTHER", "API-NOBODY"):
        none = get("Patient", bearer, identifier=f"urn:healthcrypt:mrn|{mrn}").json()
        assert (none["total"], none["entry"]) == (0, [])
    assert AccessEvent.objects.filter(action="partner_read").count() == 1
    outcome(get("Patient", bearer, identifier=MRN), 400)  # no system
    outcome(get("Patient", bearer, name=SURNAME), 400)  # not a supported search


def test_identifier_search_by_post_keeps_the_mrn_out_of_the_url(shared: Patient, token: Callable[..., str]) -> None:
    bearer = token()

    def post(body: str, content_type: str = "application/x-www-form-urlencoded") -> Any:
        return Client().post(
            f"{BASE}/Patient/_search", body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {bearer}"
        )

    found = post(f"identifier=urn:healthcrypt:mrn%7C{MRN}")
    assert found.status_code == 200
    body = found.json()
    assert (body["type"], body["total"]) == ("searchset", 1)
    assert body["entry"][0]["resource"]["id"] == str(shared.row_uid)
    assert MRN not in json.dumps(body["link"])  # the self link names no parameter
    PatientFactory(mrn="API-OTHER")
    assert post("identifier=urn:healthcrypt:mrn%7CAPI-OTHER").json()["total"] == 0  # not shared: nobody
    outcome(post("identifier=" + MRN), 400)
    outcome(post(json.dumps({"identifier": MRN}), "application/json"), 400)
    assert outcome(post(f"identifier=urn:healthcrypt:mrn%7C{MRN}&name=x"), 400).endswith("identifier.")
    assert Client().get(f"{BASE}/Patient/_search", HTTP_AUTHORIZATION=f"Bearer {bearer}").status_code == 405


def test_observation_search_pages_with_next_and_previous_links(shared: Patient, token: Callable[..., str]) -> None:
    bearer = token()
    first = get("Observation", bearer, patient=f"Patient/{shared.row_uid}", _count=2).json()
    assert (first["total"], len(first["entry"])) == (5, 2)
    relations = {link["relation"]: link["url"] for link in first["link"]}
    assert set(relations) == {"self", "next"}
    seen = [e["resource"]["id"] for e in first["entry"]]
    url = relations["next"]
    while url:
        page = Client().get(url.removeprefix("http://testserver"), HTTP_AUTHORIZATION=f"Bearer {bearer}").json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        url = {link["relation"]: link["url"] for link in page["link"]}.get("next", "")
        assert "previous" in {link["relation"] for link in page["link"]}
    assert len(seen) == len(set(seen)) == 5
    subjects = {e["resource"]["subject"]["reference"] for e in first["entry"]}
    assert subjects == {f"Patient/{shared.row_uid}"}
    assert all(e["resource"]["encounter"]["reference"].startswith("Encounter/") for e in first["entry"])
    reads = AccessEvent.objects.filter(action="partner_read").values_list("sections", flat=True)
    assert [list(sections) for sections in reads] == [["observations"]] * 3  # one per page


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({}, "Search by patient"),
        ({"_count": "abc"}, "_count must be a whole number."),
        ({"_count": "0"}, "_count must be between 1 and 200."),
        ({"_offset": "-1"}, "_offset must be between 0"),
        ({"code": "8867-4"}, "This search supports only"),
    ],
)
def test_bad_search_parameters_are_a_400_that_quotes_nothing(
    params: dict[str, str], says: str, shared: Patient, token: Callable[..., str]
) -> None:
    if params:
        params = {"patient": f"Patient/{shared.row_uid}", **params}
    text = outcome(get("Condition", token(), **params), 400)
    assert text.startswith(says)
    assert "abc" not in text
    assert "8867" not in text


def test_everything_returns_what_the_scopes_cover_as_a_valid_r4_searchset(
    shared: Patient, token: Callable[..., str]
) -> None:
    everything = get(f"Patient/{shared.row_uid}/$everything", token()).json()
    types = sorted({e["resource"]["resourceType"] for e in everything["entry"]})
    assert types == ["AllergyIntolerance", "Condition", "MedicationRequest", "Observation", "Patient"]
    assert everything["total"] == len(everything["entry"]) == 1 + 5 * 4
    _, whole = _schema()
    assert whole.is_valid(everything)

    only_patient = get(f"Patient/{shared.row_uid}/$everything", token("system/Patient.rs")).json()
    assert [e["resource"]["resourceType"] for e in only_patient["entry"]] == ["Patient"]
    last = AccessEvent.objects.filter(action="partner_read").order_by("-pk").first()
    assert last is not None
    assert list(last.sections) == ["demographics"]  # only what was read is recorded as read


def test_a_token_without_the_resources_scope_is_a_403(shared: Patient, token: Callable[..., str]) -> None:
    outcome(get("Observation", token("system/Patient.rs"), patient=f"Patient/{shared.row_uid}"), 403)
    assert not AccessEvent.objects.filter(action="partner_read").exists()


def test_nothing_is_read_when_the_disclosure_cannot_be_recorded(
    shared: Patient, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bearer = token()

    def broken(sender: object, **kwargs: object) -> None:
        raise RuntimeError("audit store down")

    disclosure_made.connect(broken, dispatch_uid="test.broken")
    try:
        response = get(f"Patient/{shared.row_uid}/$everything", bearer)
    finally:
        disclosure_made.disconnect(dispatch_uid="test.broken")
    assert outcome(response, 503).startswith("The disclosure could not be recorded")
    assert SURNAME not in response.content.decode()
    assert not AccessEvent.objects.filter(action__in=["partner_read", "disclose"]).exists()


def test_no_patient_data_in_the_url_the_logs_or_the_refusals(
    shared: Patient, token: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    bearer = token()
    get(f"Patient/{shared.row_uid}/$everything", bearer)
    get("Patient", bearer, identifier=f"urn:healthcrypt:mrn|{MRN}")
    assert SURNAME not in caplog.text
    details = json.dumps(list(AuthEventRecord.objects.values_list("detail", flat=True)))
    details += json.dumps(list(AccessEvent.objects.values_list("detail", flat=True)))
    assert SURNAME not in details
    assert MRN not in details


# --- Paging by the database -------------------------------------------------------------------------


def _observations(importer: User, patient: Patient, singles: int, panels: int = 0) -> None:
    """``singles`` heart rates and ``panels`` blood pressures (a panel and its two components), through
    the import write path in one call, newest first."""
    now = timezone.now()
    rows: list[Observation] = []
    common = {"patient": patient, "category": "vital-signs"}
    for i in range(singles):
        rows.append(
            Observation(
                **common,
                source_id=f"hr-{patient.pk}-{i}",
                loinc_code="8867-4",
                display="Heart rate",
                value=str(60 + i),
                unit="/min",
                effective_at=now - datetime.timedelta(hours=i + 1),
            )
        )
    for i in range(panels):
        at = now - datetime.timedelta(days=i + 1)
        panel = Observation(
            **common,
            source_id=f"bp-{patient.pk}-{i}",
            loinc_code="85354-9",
            display="Blood pressure panel",
            value=f"{120 + i} / 80",
            unit="mm[Hg]",
            effective_at=at,
        )
        rows.append(panel)
        for code, value in (("8480-6", str(120 + i)), ("8462-4", "80")):
            rows.append(
                Observation(
                    **common,
                    panel=panel,
                    source_id=f"bp-{patient.pk}-{i}-{code}",
                    loinc_code=code,
                    display="Blood pressure part",
                    value=value,
                    unit="mm[Hg]",
                    effective_at=at,
                )
            )
    imported_entries_create(actor=importer, entries=rows)


def _walk(first_url: str, bearer: str) -> list[dict[str, Any]]:
    pages = []
    url = first_url
    while url:
        page = Client().get(url.removeprefix("http://testserver"), HTTP_AUTHORIZATION=f"Bearer {bearer}").json()
        pages.append(page)
        url = {link["relation"]: link["url"] for link in page["link"]}.get("next", "")
    return pages


@pytest.fixture
def decrypted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model of every encrypted value opened from now on, in order."""
    opened: list[str] = []
    original = Sealed._open

    def counting(self: Sealed, row: str | None, pk: Any) -> Any:
        opened.append(self.field.model._meta.label)
        return original(self, row, pk)

    monkeypatch.setattr(Sealed, "_open", counting)
    return opened


def _page_cost(decrypted: list[str], path: str, bearer: str, **params: Any) -> tuple[tuple[int, int], Any]:
    """One page's queries and decryptions, and the page."""
    decrypted.clear()
    with CaptureQueriesContext(connection) as queries:
        response = get(path, bearer, **params)
    assert response.status_code == 200, response.content
    return (len(queries), len(decrypted)), response.json()


def test_observation_pages_carry_each_panel_with_its_components_and_count_panels_not_parts(
    front_desk: User, partner: Partner, token: Callable[..., str]
) -> None:
    patient = PatientFactory()
    _observations(front_desk, patient, singles=3, panels=4)
    DataSharing.objects.create(partner=partner, patient=patient, purpose=DataSharing.Purpose.TREATMENT)
    bearer = token()

    pages = _walk(f"{BASE}/Observation?patient=Patient/{patient.row_uid}&_count=2", bearer)

    assert [page["total"] for page in pages] == [7] * 4  # 3 heart rates + 4 panels; components are inside
    resources = [entry["resource"] for page in pages for entry in page["entry"]]
    assert len(resources) == len({r["id"] for r in resources}) == 7
    panels = [r for r in resources if r["code"]["coding"][0]["code"] == "85354-9"]
    assert len(panels) == 4
    for panel in panels:
        parts = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in panel["component"]}
        assert set(parts) == {"8480-6", "8462-4"}
        assert parts["8462-4"] == 80
    assert not any(r["code"]["coding"][0]["code"] in {"8480-6", "8462-4"} for r in resources)
    _, validator = _schema()
    for page in pages:
        assert validator.is_valid(page)
    pages_read = AccessEvent.objects.filter(action="partner_read").order_by("pk").values_list("detail", flat=True)
    assert [detail["page"] for detail in pages_read] == [{"offset": at, "count": 2} for at in (0, 2, 4, 6)]


@pytest.mark.parametrize("resource_type", ["Observation", "Condition", "MedicationRequest", "AllergyIntolerance"])
def test_a_page_costs_the_same_queries_and_decryptions_however_long_the_record(
    resource_type: str,
    front_desk: User,
    partner: Partner,
    token: Callable[..., str],
    decrypted: list[str],
) -> None:
    short, long = PatientFactory(), PatientFactory()
    _add_rows(front_desk, short, 3)
    _add_rows(front_desk, long, 3)
    _observations(front_desk, short, singles=0, panels=1)
    _observations(front_desk, long, singles=60, panels=20)
    for kind, model in (("Condition", Condition), ("MedicationRequest", Medication), ("AllergyIntolerance", Allergy)):
        if kind == resource_type:  # the long record: 60 more of the kind searched
            first = model.objects.filter(patient=long).first()
            assert first is not None
            copies = []
            for i in range(60):
                copy = model(patient=long, source_id=f"more-{i}")
                for field in model._meta.concrete_fields:
                    if field.name not in ("id", "row_uid", "patient", "source_id", "created_at", "encounter"):
                        setattr(copy, field.name, getattr(first, field.name))
                copies.append(copy)
            imported_entries_create(actor=front_desk, entries=copies)
    for patient in (short, long):
        DataSharing.objects.create(partner=partner, patient=patient, purpose=DataSharing.Purpose.TREATMENT)
    bearer = token()
    costs = []
    for patient in (short, long):
        cost, body = _page_cost(decrypted, resource_type, bearer, patient=f"Patient/{patient.row_uid}", _count=2)
        assert len(body["entry"]) == 2
        costs.append(cost)
    assert body["total"] > 60  # the long record's
    assert costs[0] == costs[1], "a page of a long record must read no more than a page of a short one"


def test_everything_pages_the_patient_then_each_type_as_one_list(
    front_desk: User, partner: Partner, token: Callable[..., str]
) -> None:
    patient = PatientFactory()
    _add_rows(front_desk, patient, 4)  # 4 of each type
    _observations(front_desk, patient, singles=0, panels=2)  # 2 more observations, with components
    DataSharing.objects.create(partner=partner, patient=patient, purpose=DataSharing.Purpose.TREATMENT)
    bearer = token()

    pages = _walk(f"{BASE}/Patient/{patient.row_uid}/$everything?_count=5", bearer)

    total = 1 + 6 + 4 * 3
    assert [page["total"] for page in pages] == [total] * 4
    assert [len(page["entry"]) for page in pages] == [5, 5, 5, 4]
    kinds = [entry["resource"]["resourceType"] for page in pages for entry in page["entry"]]
    assert (
        kinds
        == ["Patient"]
        + ["Observation"] * 6
        + ["Condition"] * 4
        + ["MedicationRequest"] * 4
        + ["AllergyIntolerance"] * 4
    )
    ids = [entry["resource"]["id"] for page in pages for entry in page["entry"]]
    assert len(set(ids)) == len(ids)
    whole = get(f"Patient/{patient.row_uid}/$everything", bearer).json()  # the default page holds it all
    assert [entry["resource"]["id"] for entry in whole["entry"]] == ids
    assert [link["relation"] for link in whole["link"]] == ["self"]
    with_components = [r for page in pages for e in page["entry"] if "component" in (r := e["resource"])]
    assert len(with_components) == 2
    _, validator = _schema()
    assert all(validator.is_valid(page) for page in pages)
    # Each page is one read and one disclosure, naming its window.
    details = AccessEvent.objects.filter(action="partner_read").order_by("pk").values_list("detail", flat=True)
    assert [d["page"] for d in details][:4] == [{"offset": at, "count": 5} for at in (0, 5, 10, 15)]


def test_a_page_of_everything_costs_the_same_however_long_the_record(
    front_desk: User, partner: Partner, token: Callable[..., str], decrypted: list[str]
) -> None:
    short, long = PatientFactory(), PatientFactory()
    _add_rows(front_desk, short, 2)
    _add_rows(front_desk, long, 2)
    _observations(front_desk, long, singles=80, panels=20)
    for patient in (short, long):
        DataSharing.objects.create(partner=partner, patient=patient, purpose=DataSharing.Purpose.TREATMENT)
    bearer = token()
    costs = []
    for patient in (short, long):
        cost, body = _page_cost(decrypted, f"Patient/{patient.row_uid}/$everything", bearer, _count=3)
        assert len(body["entry"]) == 3
        costs.append(cost)
    assert body["total"] == 1 + 102 + 2 * 3
    assert costs[0] == costs[1], "a page of a long record must read no more than a page of a short one"


@pytest.mark.parametrize(
    "spelling", ["braces", "urn", "hyphens moved", "newline", "plus", "arabic digit", "no hyphens"]
)
def test_an_id_spelled_otherwise_than_we_write_it_is_a_404(
    spelling: str, shared: Patient, token: Callable[..., str]
) -> None:
    # uuid.UUID() takes all of these; the answer's links would have echoed the spelling back.
    uid = str(shared.row_uid)
    path_id = {
        "braces": "%7B" + uid + "%7D",
        "urn": "urn:uuid:" + uid,
        "hyphens moved": "-" + uid.replace("-", "", 1),
        "newline": "%0A" + uid,
        "plus": "%2B" + uid[1:],
        "arabic digit": "%D9%A0" + uid[1:],
        "no hyphens": shared.row_uid.hex,
    }[spelling]
    bearer = token()
    assert outcome(Client().get(f"{BASE}/Patient/{path_id}/$everything", HTTP_AUTHORIZATION=f"Bearer {bearer}"), 404)
    assert outcome(get("Observation", bearer, patient=f"Patient/{path_id}"), 404)
    assert not AccessEvent.objects.filter(action="partner_read").exists()


def test_links_name_the_id_as_we_write_it(shared: Patient, token: Callable[..., str]) -> None:
    upper = str(shared.row_uid).upper()
    bearer = token()
    everything = get(f"Patient/{upper}/$everything", bearer, _count=2).json()
    search = get("Observation", bearer, patient=f"Patient/{upper}", _count=2).json()
    for link in everything["link"]:
        assert link["url"].startswith(f"http://testserver{BASE}/Patient/{shared.row_uid}/$everything?_count=2&")
    for link in search["link"]:
        assert f"patient=Patient%2F{shared.row_uid}&" in link["url"]
    assert upper not in json.dumps([everything["link"], search["link"]])


def test_a_pages_access_event_names_the_sections_on_the_page(shared: Patient, token: Callable[..., str]) -> None:
    bearer = token()
    path = f"Patient/{shared.row_uid}/$everything"
    for params, sections in (
        ({"_count": 1}, ["demographics"]),
        ({"_count": 2, "_offset": 5}, ["conditions", "observations"]),  # the last observation, a condition
        ({"_count": 5, "_offset": 16}, ["allergies"]),
        ({"_count": 5, "_offset": 500}, ["allergies", "conditions", "demographics", "medications", "observations"]),
    ):
        body = get(path, bearer, **params).json()
        event = AccessEvent.objects.filter(action="partner_read").latest("pk")
        assert sorted(event.sections) == sections, params
        assert (event.detail["page"], body["total"]) == (
            {"offset": params.get("_offset", 0), "count": params["_count"]},
            21,
        )


def test_a_search_page_decrypts_nothing_of_the_patient(
    shared: Patient, token: Callable[..., str], decrypted: list[str]
) -> None:
    _, body = _page_cost(decrypted, "Observation", token(), patient=f"Patient/{shared.row_uid}", _count=2)
    assert len(body["entry"]) == 2
    assert set(decrypted) == {"records.Observation"}
