"""The partner API's resource endpoints (read-only FHIR R4 REST under ``/fhir/r4/``).

- ``GET Patient/{id}``, ``GET Patient?identifier=urn:healthcrypt:mrn|MRN``
- ``GET Patient/{id}/$everything`` with ``_count`` (at most 1,000, default 500) and ``_offset``: the
  patient, then each resource type the token's scopes cover, paged as one list with ``next`` links
- ``GET Observation|Condition|MedicationRequest|AllergyIntolerance?patient=Patient/{id}`` with
  ``_count`` (at most 200) and ``_offset``, and ``next``/``previous`` links; the database pages, so a
  page decrypts its own rows only (an observation's components come with it), whatever the record's size.

A resource's id is its row's random identity (``row_uid``, as in the FHIR export), never a database
key. Every call goes through ``@partner_api`` (bearer token, rate limit, the resource's scope) and
then through the records read path (``records.selectors.record_for_recipient``): the partner's data
sharing is asked there, and the read is an access event of the sections returned plus a disclosure
to the partner, written before anything is decrypted. A patient who is not shared with the partner
is a 404, exactly as one who does not exist; ``$everything`` returns only the resource types the
token's scopes cover. Errors are OperationOutcomes whose text never quotes the request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, QueryDict

from accounts.roles import DataCategory
from accounts.signals import AuthEvent
from exchange.api.auth import ApiRefused, PartnerAuth, partner_api
from exchange.api.responses import api_methods, fhir_response, operation_outcome
from exchange.api.token import api_base_url
from exchange.fhir.export import (
    MRN_SYSTEM,
    allergy_resource,
    condition_resource,
    fhir_safe,
    medication_resource,
    observation_resource,
    patient_resource,
)
from exchange.partners.models import DataSharing
from exchange.partners.scopes import RESOURCE_TYPES
from exchange.partners.selectors import partner_may_see_patient, shared_patient_ids, sharing_purpose
from exchange.partners.services import token_refusal_record
from records.crypto import mrn_index
from records.models import Patient
from records.selectors import AccessNotRecorded, AccessRefused
from records.selectors.export import ExportRecord, Page, record_for_recipient

D = DataCategory

# The section of the record each resource type of the API is read from.
SECTIONS: dict[str, DataCategory] = {
    "Patient": D.DEMOGRAPHICS,
    "Observation": D.OBSERVATIONS,
    "Condition": D.CONDITIONS,
    "MedicationRequest": D.MEDICATIONS,
    "AllergyIntolerance": D.ALLERGIES,
}
DEFAULT_COUNT = 50
MAX_COUNT = 200
SEARCH_PARAMS = frozenset({"patient", "_count", "_offset"})
# $everything: a record of years is thousands of resources; a page is bounded like a search's.
EVERYTHING_DEFAULT_COUNT = 500
EVERYTHING_MAX_COUNT = 1000
EVERYTHING_PARAMS = frozenset({"_count", "_offset"})
MAX_OFFSET = 10**9
CANONICAL_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)


# Sharings whose purpose needs the patient's national identifier (SSN) to match records; research,
# public health and operations partners get the Patient without it (minimum necessary).
NATIONAL_ID_PURPOSES = frozenset({DataSharing.Purpose.TREATMENT, DataSharing.Purpose.PAYMENT})


def _builders(record: ExportRecord, purpose: str) -> dict[str, Callable[[], list[dict[str, Any]]]]:
    patient = record.patient_uid
    national_id = purpose in NATIONAL_ID_PURPOSES
    return {
        "Patient": lambda: [patient_resource(record.patient, national_id=national_id)] if record.patient else [],
        "Observation": lambda: [observation_resource(o, patient) for o in record.observations],
        "Condition": lambda: [condition_resource(c, patient) for c in record.conditions],
        "MedicationRequest": lambda: [medication_resource(m, patient) for m in record.medications],
        "AllergyIntolerance": lambda: [allergy_resource(a, patient) for a in record.allergies],
    }


def _rest_references(resource: dict[str, Any]) -> dict[str, Any]:
    """The export points with ``urn:uuid:`` (a self-contained bundle); a REST answer points with
    ``Type/id``: the patient (``subject``/``patient``) and the stay (``encounter``)."""
    for key, kind in (("subject", "Patient"), ("patient", "Patient"), ("encounter", "Encounter")):
        target = resource.get(key)
        if isinstance(target, dict) and str(target.get("reference", "")).startswith("urn:uuid:"):
            resource[key] = {**target, "reference": f"{kind}/{target['reference'].removeprefix('urn:uuid:')}"}
    return resource


def _patient_pk(auth: PartnerAuth, reference: str) -> tuple[int, uuid.UUID]:
    """The patient named by ``{id}`` or ``Patient/{id}`` among those shared with the partner; 404 for
    a malformed or unknown id and for a patient not shared, in the same one query (no difference in
    time or in queries tells them apart). The read itself (``_read``) asks the sharing again."""
    raw = reference.removeprefix("Patient/")
    # Our ids as we write them (a UUID's 36 characters, any case), not every spelling uuid.UUID takes
    # (braces, urn:uuid:, hyphens anywhere, whitespace, "+", other scripts' digits).
    if not CANONICAL_ID.fullmatch(raw):
        raise ApiRefused(404, "Not found.", "not_shared")
    identity = uuid.UUID(raw)
    shared = shared_patient_ids(auth.partner)
    pk = Patient.objects.filter(row_uid=identity, pk__in=shared).values_list("pk", flat=True).first()
    if pk is None:
        raise ApiRefused(404, "Not found.", "not_shared")
    # The identity as it is spelled canonically: links name it so, never the request's spelling.
    return pk, identity


def _read(
    auth: PartnerAuth, patient_pk: int, types: Iterable[str], page: Page | None = None
) -> tuple[dict[str, list[dict[str, Any]]], int | None]:
    """The resources of ``types`` of one patient, through the audited read path; with a ``page`` (over
    the types in a row, in RESOURCE_TYPES order), that page of them and how many there are in all (else None)."""
    wanted = [t for t in types if t in SECTIONS]
    partner = auth.partner
    purpose = sharing_purpose(partner, patient_pk) or "data_sharing"
    detail: dict[str, Any] = {"partner_id": partner.pk, "resources": sorted(wanted)}
    if page is not None:
        # Which page was disclosed (positions only), for the accounting of disclosures.
        detail["page"] = {"offset": page.offset, "count": page.count}
    try:
        record = record_for_recipient(
            patient_id=patient_pk,
            sections=frozenset(SECTIONS[t] for t in wanted),
            recipient=partner.name,
            purpose=purpose,
            may_see=lambda pk: partner_may_see_patient(partner, pk),
            detail=detail,
            page=page,
        )
    except AccessRefused:
        raise ApiRefused(404, "Not found.", "not_shared") from None
    except AccessNotRecorded:
        raise ApiRefused(503, "The disclosure could not be recorded; nothing was read.", "not_recorded") from None
    builders = _builders(record, purpose)
    # A page holds the types whose sections it reaches (record.categories); the others are not read.
    return {
        t: [_rest_references(fhir_safe(r)) for r in builders[t]()] if SECTIONS[t] in record.categories else []
        for t in wanted
    }, record.total


def _auth(request: HttpRequest) -> PartnerAuth:
    return cast(PartnerAuth, cast(Any, request).partner_auth)


def _entry(base: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": "match"},
    }


def _searchset(
    request: HttpRequest, resources: list[dict[str, Any]], *, total: int, links: list[dict[str, str]]
) -> HttpResponse:
    base = api_base_url(request)
    return fhir_response(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": [_entry(base, r) for r in resources],
        }
    )


def _number(request: HttpRequest, name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiRefused(400, f"{name} must be a whole number.", "bad_request") from None
    if not lowest <= value <= highest:
        raise ApiRefused(400, f"{name} must be between {lowest} and {highest}.", "bad_request")
    return value


def _unsupported(request: HttpRequest, allowed: frozenset[str]) -> None:
    unknown = set(request.GET) - allowed
    if unknown:
        # Names only a count, never what was sent.
        if not allowed:
            raise ApiRefused(400, "This operation takes no parameters.", "bad_request")
        raise ApiRefused(400, "This search supports only: " + ", ".join(sorted(allowed)) + ".", "bad_request")


@login_not_required
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under the API: an OperationOutcome 404, never the site's HTML page."""
    return operation_outcome(404, "Not found.")


@api_methods("GET")
@partner_api("Patient")
def patient_read(request: HttpRequest, patient_id: str) -> HttpResponse:
    auth = _auth(request)
    (resource,) = _read(auth, _patient_pk(auth, patient_id)[0], ["Patient"])[0]["Patient"]
    return fhir_response(resource)


def _identifier_search(request: HttpRequest, params: QueryDict, self_url: str) -> HttpResponse:
    """``identifier=urn:healthcrypt:mrn|MRN``: the patient if shared with the partner, else none."""
    unknown = set(params) - {"identifier"}
    if unknown:
        raise ApiRefused(400, "This search supports only: identifier.", "bad_request")
    system, _, value = params.get("identifier", "").partition("|")
    if system != MRN_SYSTEM or not value:
        raise ApiRefused(400, f"Search by identifier={MRN_SYSTEM}|value.", "bad_request")
    auth = _auth(request)
    # Looked up among the partner's patients only: an MRN of a patient not shared with it and an MRN
    # unknown here take the same one query, so neither the answer nor its time says which it was.
    shared = shared_patient_ids(auth.partner)
    pk = Patient.objects.filter(mrn_index=mrn_index(value), pk__in=shared).values_list("pk", flat=True).first()
    try:
        resources = _read(auth, pk, ["Patient"])[0]["Patient"] if pk is not None else []
    except ApiRefused as refused:
        if refused.status != 404:
            raise
        resources = []  # the sharing ended in between: a search finds nobody, as for an unknown MRN
    if not resources:
        # A search that found nobody is recorded like a refusal (guessing MRNs is how a partner would
        # probe who is a patient here); the answer is still an empty searchset.
        token_refusal_record(
            request=request, event=AuthEvent.PARTNER_API_REFUSED, error="200", reason="no_match", partner=auth.partner
        )
    return _searchset(request, resources, total=len(resources), links=[{"relation": "self", "url": self_url}])


@api_methods("GET")
@partner_api("Patient")
def patient_search(request: HttpRequest) -> HttpResponse:
    """``GET Patient?identifier=...``. The MRN is then in the URL, and so in any proxy's access log:
    ``POST Patient/_search`` (below) is the way to keep it out."""
    return _identifier_search(request, request.GET, request.build_absolute_uri())


@api_methods("POST")
@partner_api("Patient")
def patient_search_post(request: HttpRequest) -> HttpResponse:
    """``POST Patient/_search`` with ``identifier=...`` form-encoded (FHIR's search by POST): the MRN
    travels in the body, never in a URL or an access log. The self link names no parameter."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiRefused(400, "Send the search parameters form-encoded.", "bad_request")
    return _identifier_search(request, request.POST, request.build_absolute_uri())


def _page(request: HttpRequest, default: int, highest: int) -> Page:
    """The page asked for: ``_count`` resources from ``_offset``, checked before any query."""
    return Page(_number(request, "_offset", 0, 0, MAX_OFFSET), _number(request, "_count", default, 1, highest))


def _links(page: Page, total: int, url: str, params: dict[str, str]) -> list[dict[str, str]]:
    """``self``, ``next`` while resources remain, ``previous`` after the first page; ``url`` and
    ``params`` built from checked values (the canonical patient id), never the request's spelling."""

    def link(relation: str, at: int) -> dict[str, str]:
        return {"relation": relation, "url": f"{url}?{urlencode({**params, '_count': page.count, '_offset': at})}"}

    found = [link("self", page.offset)]
    if page.offset + page.count < total:
        found.append(link("next", page.offset + page.count))
    if page.offset > 0:
        found.append(link("previous", max(0, page.offset - page.count)))
    return found


@api_methods("GET")
@partner_api("Patient")
def patient_everything(request: HttpRequest, patient_id: str) -> HttpResponse:
    """The patient, then every resource of theirs the token's scopes cover, as one searchset paged by
    ``_count`` (the patient on the first page)."""
    _unsupported(request, EVERYTHING_PARAMS)
    page = _page(request, EVERYTHING_DEFAULT_COUNT, EVERYTHING_MAX_COUNT)
    auth = _auth(request)
    patient_pk, identity = _patient_pk(auth, patient_id)
    types = [t for t in RESOURCE_TYPES if auth.allows(t)]
    found, total = _read(auth, patient_pk, types, page)
    resources = [r for t in types for r in found[t]]
    url = f"{api_base_url(request)}/Patient/{identity}/$everything"
    return _searchset(request, resources, total=total or 0, links=_links(page, total or 0, url, {}))


def _type_search(resource_type: str) -> Callable[[HttpRequest], HttpResponse]:
    @api_methods("GET")
    @partner_api(resource_type)
    def search(request: HttpRequest) -> HttpResponse:
        _unsupported(request, SEARCH_PARAMS)
        reference = request.GET.get("patient", "")
        if not reference:
            raise ApiRefused(400, "Search by patient=Patient/{id}.", "bad_request")
        page = _page(request, DEFAULT_COUNT, MAX_COUNT)
        auth = _auth(request)
        patient_pk, identity = _patient_pk(auth, reference)
        found, total = _read(auth, patient_pk, [resource_type], page)
        links = _links(page, total or 0, f"{api_base_url(request)}/{resource_type}", {"patient": f"Patient/{identity}"})
        return _searchset(request, found[resource_type], total=total or 0, links=links)

    search.__name__ = f"{resource_type.lower()}_search"
    return search


observation_search = _type_search("Observation")
condition_search = _type_search("Condition")
medication_request_search = _type_search("MedicationRequest")
allergy_intolerance_search = _type_search("AllergyIntolerance")
