"""Finding a patient by MRN, or by surname (with an optional given name and birth year or date).

The names are encrypted, so the database finds candidates through blind indexes of the normalised
names (records.crypto.normalise_name), and the birth year or date, the sort and the paging are
applied after decrypting the candidates' names and birth dates. That set is bounded
(SEARCH_SCAN_LIMIT): a surname more common than that asks for a given name or a birth year instead
of reading thousands of rows. A birth-year blind index was not added: a year has about a hundred
values, so its index would show anyone reading the table the age structure of the patients and,
with the surname index, make rows far easier to single out; filtering the bounded candidates costs
one decryption per candidate instead.
"""

from __future__ import annotations

import datetime
from typing import Any

from accounts.roles import Capability, DataCategory, has_capability
from records.crypto import family_name_index, given_name_index, mrn_index, normalise_name
from records.models import Patient
from records.permissions import AccessDecision, openable_charts
from records.selectors.access import SUMMARY_FIELDS, AccessRefused, _page_number, _record, _summary
from records.selectors.read_models import Page, PatientSummary, SearchResults, SearchRow

D = DataCategory

SEARCH_PER_PAGE = 20
# The most candidates one search decrypts to filter and sort: a few hundred decryptions are a few
# milliseconds; a surname matching more than this is too broad to browse anyway.
SEARCH_SCAN_LIMIT = 500
# Sort keys a search page accepts (a column key in the request, never a value); "-" reverses.
SEARCH_SORTS = ("name", "born", "mrn")


def _sort_key(sort: str) -> tuple[str, bool]:
    key = sort.removeprefix("-")
    return (key if key in SEARCH_SORTS else "name"), sort.startswith("-") and key in SEARCH_SORTS


def _ordered(candidates: list[PatientSummary], sort: str) -> list[PatientSummary]:
    key, descending = _sort_key(sort)
    if key == "born":
        return sorted(candidates, key=lambda p: (p.birth_date, p.id), reverse=descending)
    if key == "mrn":
        return sorted(candidates, key=lambda p: (p.mrn.casefold(), p.id), reverse=descending)
    return sorted(
        candidates,
        key=lambda p: (normalise_name(p.family_name), normalise_name(p.given_name), p.id),
        reverse=descending,
    )


def patient_find(
    *,
    actor: Any,
    mrn: str = "",
    family_name: str = "",
    given_name: str = "",
    birth_year: int | None = None,
    birth_date: datetime.date | None = None,
    page: object = 1,
    sort: str = "name",
    purpose: str = "registration",
) -> SearchResults:
    """Search by MRN (exact), or by surname with an optional given name and birth year or date.

    Recorded as the exact search is: one ``search`` event saying how it searched and how many it
    found (never the terms), and one ``search_result`` event per patient *shown on this page* (so
    each patient's access report lists the searches that showed them, and the same-surname rules
    see them; the bulk-browsing rule counts chart openings only, not pages of results: a follow-up). Each row says whether the user may open the record
    (records.permissions.openable_charts, in bulk).
    """
    if not has_capability(actor, Capability.SEARCH_PATIENTS):
        raise AccessRefused(AccessDecision.forbidden("role_cannot_search"))
    empty = SearchResults((), Page(1, SEARCH_PER_PAGE, 0))
    if mrn.strip():
        queryset, by = Patient.objects.filter(mrn_index=mrn_index(mrn)), "mrn"
    elif normalise_name(family_name):
        queryset, by = Patient.objects.filter(family_name_index=family_name_index(family_name)), "surname"
        if normalise_name(given_name):
            queryset = queryset.filter(given_name_index=given_name_index(given_name))
    else:
        return empty
    detail: dict[str, Any] = {"by": by}
    if by == "surname":
        # Which narrowing terms were used, never their values.
        detail.update(given_name=bool(normalise_name(given_name)), birth=bool(birth_year or birth_date))
    candidates = list(queryset.order_by("id").only(*SUMMARY_FIELDS)[: SEARCH_SCAN_LIMIT + 1])
    if len(candidates) > SEARCH_SCAN_LIMIT:
        _record(
            actor=actor,
            patient_ids=[None],
            category=D.DEMOGRAPHICS,
            action="search",
            purpose=purpose,
            detail={**detail, "results": len(candidates), "too_many": True},
        )
        return SearchResults((), empty.page, too_many=True)
    # Decrypted to filter and sort only; nothing is shown or returned before the accesses are recorded.
    found = [_summary(p) for p in candidates]
    if birth_date is not None:
        found = [p for p in found if p.birth_date == birth_date]
    elif birth_year is not None:
        found = [p for p in found if p.birth_date.year == birth_year]
    found = _ordered(found, sort)
    current = Page(_page_number(page), SEARCH_PER_PAGE, len(found))
    current = Page(min(current.number, current.num_pages), current.per_page, current.total)
    start = (current.number - 1) * current.per_page
    shown = found[start : start + current.per_page]
    _record(
        actor=actor,
        patient_ids=[None],
        category=D.DEMOGRAPHICS,
        action="search",
        purpose=purpose,
        detail={**detail, "results": len(found), "page": current.number},
    )
    _record(
        actor=actor,
        patient_ids=[p.id for p in shown],
        category=D.DEMOGRAPHICS,
        action="search_result",
        purpose=purpose,
        detail={"by": by},
    )
    openable = openable_charts(actor, [p.id for p in shown])
    return SearchResults(tuple(SearchRow(p, p.id in openable) for p in shown), current)
