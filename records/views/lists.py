"""Patient lists and search: a clinician's own patients, the front desk's registrations, exact search.

Every page here shows names and MRNs, so each asks for a fresh one-time code (records/urls.py).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from accounts.decorators import capability_required, step_up_required
from accounts.roles import Capability, has_capability
from records import forms, selectors

C = Capability


@require_GET
@capability_required(C.VIEW_PATIENT_LIST)
@step_up_required
def my_patients(request: HttpRequest) -> HttpResponse:
    patients, page = selectors.my_patients(actor=request.user, page=request.GET.get("page"))
    context = {
        "patients": patients,
        "page": page,
        "title": "My patients",
        "open_url_name": "records:chart",
        "open_label": "Open chart",
    }
    return render(request, "records/patient_list.html", context)


@require_http_methods(["GET", "POST"])
@capability_required(C.SEARCH_PATIENTS)
@step_up_required
@sensitive_post_parameters("mrn", "family_name", "birth_date")
def search(request: HttpRequest) -> HttpResponse:
    """Exact search. The terms are posted and the results shown in the answer: an MRN, a surname or a
    birth date never goes in a URL, so never in browser history, a Referer or the access log."""
    form = forms.SearchForm(request.POST if request.method == "POST" else None)
    results = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            results = selectors.patient_search(
                actor=request.user,
                mrn=form.cleaned_data["mrn"],
                family_name=form.cleaned_data["family_name"],
                birth_date=form.cleaned_data["birth_date"],
            )
        else:
            status = 400
    open_url_name = "records:chart" if has_capability(request.user, C.VIEW_CHART) else "records:registration_detail"
    return render(
        request,
        "records/search.html",
        {"form": form, "results": results, "open_url_name": open_url_name},
        status=status,
    )


@require_GET
@capability_required(C.REGISTER_PATIENT)
@step_up_required
def registrations(request: HttpRequest) -> HttpResponse:
    patients, page = selectors.registration_list(actor=request.user, page=request.GET.get("page"))
    context = {
        "patients": patients,
        "page": page,
        "title": "Recent registrations",
        "open_url_name": "records:registration_detail",
    }
    return render(request, "records/patient_list.html", context)
