"""Patient lists and search: a clinician's own patients, the front desk's registrations, the search.

Every page here shows names and MRNs, so each asks for a fresh one-time code (records/urls.py).
Lists sort by a column key in the query string (``?sort=-born``), never by a value; the search
pages and sorts by posting its terms again, so no name, MRN or date ever reaches a URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from accounts.decorators import capability_required, step_up_required
from accounts.roles import Capability, has_capability
from records import forms, selectors
from records.selectors.lists import MY_PATIENTS_SORTS, REGISTRATION_SORTS
from records.views_breakglass import remember_found

C = Capability

# The list columns, by sort key: (header, key). A key not in a page's sorts is a plain header.
COLUMNS = {"name": "Patient", "mrn": "MRN", "born": "Born", "registered": "Registered"}


@dataclass(frozen=True)
class Header:
    """A column header: its sort key (empty: not sortable), the value its link or button asks
    for next (ascending first, then the reverse), and its aria-sort."""

    label: str
    key: str = ""
    next: str = ""
    aria_sort: str = ""


def headers(columns: tuple[str, ...], *, sorts: tuple[str, ...], current: str) -> list[Header]:
    """Headers for ``columns``; those in ``sorts`` toggle direction, the current one says so."""
    key, descending = current.removeprefix("-"), current.startswith("-")
    result = []
    for column in columns:
        if column not in sorts:
            result.append(Header(COLUMNS[column]))
        elif column == key:
            result.append(
                Header(
                    COLUMNS[column],
                    column,
                    column if descending else f"-{column}",
                    "descending" if descending else "ascending",
                )
            )
        else:
            result.append(Header(COLUMNS[column], column, column, "none"))
    return result


def _sort(request: HttpRequest, sorts: tuple[str, ...], default: str) -> str:
    """The ``sort`` of the query string if it names one of ``sorts`` (an unknown key is ignored)."""
    sort = request.GET.get("sort", "")
    return sort if sort.removeprefix("-") in sorts else default


@require_GET
@capability_required(C.VIEW_PATIENT_LIST)
@step_up_required
def my_patients(request: HttpRequest) -> HttpResponse:
    sort = _sort(request, MY_PATIENTS_SORTS, "name")
    patients, page = selectors.my_patients(actor=request.user, page=request.GET.get("page"), sort=sort)
    context = {
        "patients": patients,
        "page": page,
        "title": "My patients",
        "open_url_name": "records:chart",
        "open_label": "Open chart",
        "headers": headers(("name", "mrn", "born"), sorts=MY_PATIENTS_SORTS, current=sort),
        "sort": sort,
    }
    return render(request, "records/patient_list.html", context)


@require_http_methods(["GET", "POST"])
@capability_required(C.SEARCH_PATIENTS)
@step_up_required
@sensitive_post_parameters("mrn", "family_name", "given_name", "birth_year", "birth_date")
def search(request: HttpRequest) -> HttpResponse:
    """Search by MRN, or by surname with an optional given name and birth year or date.

    The terms are posted and the results shown in the answer: an MRN, a name or a birth date never
    goes in a URL, so never in browser history, a Referer or the access log. Paging and sorting post
    the same terms again with a page number or a sort key.
    """
    posted = request.POST if request.method == "POST" else None
    form = forms.PatientSearchForm(posted, sorts=selectors.SEARCH_SORTS)
    results = None
    status = 200
    sort = "name"
    if posted is not None:
        if form.is_valid():
            data = form.cleaned_data
            sort = data["sort"] or "name"
            results = selectors.patient_find(
                actor=request.user,
                mrn=data["mrn"],
                family_name=data["family_name"],
                given_name=data["given_name"],
                birth_year=data["birth_year"],
                birth_date=data["birth_date"],
                page=data["page"] or 1,
                sort=sort,
            )
        else:
            status = 400
    may_break_glass = has_capability(request.user, C.BREAK_GLASS)
    if results is not None and may_break_glass:
        # The break-the-glass request page opens only for patients this session found (no probing by id).
        remember_found(request, [row.patient.id for row in results.rows if not row.may_open])
    open_url_name = "records:chart" if has_capability(request.user, C.VIEW_CHART) else "records:registration_detail"
    context = {
        "form": form,
        "results": results,
        "open_url_name": open_url_name,
        "may_break_glass": may_break_glass,
        "headers": headers(("name", "mrn", "born"), sorts=selectors.SEARCH_SORTS, current=sort),
        "sort": sort,
    }
    return render(request, "records/search.html", context, status=status)


@require_GET
@capability_required(C.REGISTER_PATIENT)
@step_up_required
def registrations(request: HttpRequest) -> HttpResponse:
    sort = _sort(request, REGISTRATION_SORTS, "-registered")
    patients, page = selectors.registration_list(actor=request.user, page=request.GET.get("page"), sort=sort)
    context = {
        "patients": patients,
        "page": page,
        "title": "Recent registrations",
        "open_url_name": "records:registration_detail",
        "headers": headers(("name", "mrn", "born", "registered"), sorts=REGISTRATION_SORTS, current=sort),
        "sort": sort,
        "show_registered": True,
    }
    return render(request, "records/patient_list.html", context)
