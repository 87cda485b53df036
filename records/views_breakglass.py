"""Break the glass (DESIGN.md §8): find the patient, state a reason, re-enter a code, see the emergency
summary, open the full chart, end the access early.

Thin like records/views/: form -> capability -> selector (records/selectors/, audited) or service
(records/breakglass.py) -> render. Patient identifiers typed to find someone (MRN, surname, birth
date) are posted, never put in a URL; pages are addressed by the patient's id only.

The request page shows who a patient is, so it opens only for patients this session found by an
exact search or among the recent arrivals: walking through patient ids reveals nobody.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth import logout
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import capability_required, step_up_required
from accounts.models import User
from accounts.roles import Capability
from accounts.services import second_factor_failed, step_up_is_fresh, step_up_record, totp_device_confirmed
from records import breakglass, forms, selectors
from records.permissions import AccessDecision
from records.views.base import _apply_validation_error

logger = logging.getLogger(__name__)

C = Capability
START = "records/breakglass/start.html"
REQUEST = "records/breakglass/request.html"
NO_MATCH = "No patient has this MRN, or this surname and birth date. Check them and try again."
# Ids of the patients this session found (search results, recent arrivals), newest first.
FOUND_KEY = "hc_break_glass_found"
FOUND_LIMIT = 100


def remember_found(request: HttpRequest, patient_ids: list[int]) -> None:
    """Let this session ask to break the glass for these patients (it found them in a search or list)."""
    earlier = [i for i in request.session.get(FOUND_KEY, []) if i not in patient_ids]
    request.session[FOUND_KEY] = [*patient_ids, *earlier][:FOUND_LIMIT]


def _require_found(request: HttpRequest, patient_id: int) -> None:
    """404 unless this session found the patient first (no existence leak, nothing recorded)."""
    if patient_id not in request.session.get(FOUND_KEY, []):
        raise selectors.AccessRefused(AccessDecision.not_found())


def _start_context(request: HttpRequest, grants: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The start page's context; ``grants``: the user's grants in force when the caller read them already."""
    if grants is None:
        grants = selectors.my_active_grants(actor=request.user)
    return {"find_form": forms.SearchForm(), "grants": grants, **extra}


@require_GET
@capability_required(C.BREAK_GLASS)
@step_up_required
def start(request: HttpRequest) -> HttpResponse:
    """Find the patient: a search form (posted), the patients who arrived in the last day and the
    user's grants in force: both lists recorded together, one event per patient for the page."""
    arrivals, grants = selectors.run_together(
        [selectors.recent_arrivals.steps(actor=request.user), selectors.my_active_grants.steps(actor=request.user)],
        page="break_glass_start",
    )
    remember_found(request, [row.patient.id for row in arrivals])
    return render(request, START, _start_context(request, grants, arrivals=arrivals))


@require_POST
@capability_required(C.BREAK_GLASS)
@step_up_required
@sensitive_post_parameters("mrn", "family_name", "birth_date")
def find(request: HttpRequest) -> HttpResponse:
    """Exact search by MRN, or surname + birth date, through the blind indexes (recorded)."""
    form = forms.SearchForm(request.POST)
    if not form.is_valid():
        return render(request, START, {**_start_context(request), "find_form": form}, status=400)
    results = selectors.patient_search(
        actor=request.user,
        mrn=form.cleaned_data["mrn"],
        family_name=form.cleaned_data["family_name"],
        birth_date=form.cleaned_data["birth_date"],
        purpose="emergency",
    )
    remember_found(request, [p.id for p in results])
    if not results:
        form.add_error(None, NO_MATCH)
        return render(request, START, {**_start_context(request), "find_form": form, "results": []}, status=404)
    return render(request, START, {**_start_context(request), "find_form": form, "results": results})


def _request_page(request: HttpRequest, patient_id: int, form: forms.BreakGlassForm, status: int = 200) -> HttpResponse:
    patient = selectors.emergency_candidate(actor=request.user, patient_id=patient_id)
    return render(request, REQUEST, {"patient": patient, "form": form}, status=status)


@require_GET
@capability_required(C.BREAK_GLASS)
@step_up_required
def request_access(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Who the request is about, and the form: reason, a few words, a fresh one-time code."""
    _require_found(request, patient_id)
    return _request_page(request, patient_id, forms.BreakGlassForm())


@require_POST
@capability_required(C.BREAK_GLASS)
@sensitive_post_parameters("otp_token", "explanation")
def grant(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Break the glass. A wrong or replayed code counts toward the lockout, as on the step-up page."""
    _require_found(request, patient_id)
    user = cast(User, request.user)
    form = forms.BreakGlassForm(request.POST)
    if form.is_valid():
        try:
            created = breakglass.break_glass_grant(
                actor=user,
                patient_id=patient_id,
                reason=form.cleaned_data["reason"],
                explanation=form.cleaned_data["explanation"],
                code=form.cleaned_data["otp_token"],
            )
        except breakglass.CodeRejected as error:
            second_factor_failed(request, user, stage="break_glass")
            if getattr(request, "axes_locked_out", False):
                # As on the step-up page: the last straw signs the person out; AxesMiddleware
                # turns the marked request into the lockout page.
                logout(request)
                # Read by AxesMiddleware; HttpRequest declares no such attribute (as in accounts/views.py).
                vars(request)["axes_credentials"] = {"username": user.get_username()}
                return HttpResponse(status=429)
            _apply_validation_error(form, error)
        except ValidationError as error:
            _apply_validation_error(form, error)
        else:
            # The code just entered is a fresh second factor: the summary and chart need no other.
            device = totp_device_confirmed(user)
            if device is not None:
                step_up_record(request, device)
            messages.warning(
                request,
                f"Emergency access granted until {timezone.localtime(created.expires_at):%H:%M}. "
                "Every view is recorded and reviewed.",
            )
            return redirect("records:emergency_summary", patient_id=patient_id)
    if not step_up_is_fresh(request):
        # The request page shows who the patient is: without a fresh code, send the person back to
        # it (through the step-up) rather than show it again here. Nothing was granted.
        messages.error(request, "Emergency access was not granted. Confirm it is you, then try again.")
        return redirect("records:emergency_request", patient_id=patient_id)
    return _request_page(request, patient_id, form, status=400)


@require_GET
@capability_required(C.BREAK_GLASS)
@step_up_required
def summary(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Allergies, active medications, problems, the last vitals and recent stays; one click to the chart."""
    record = selectors.emergency_summary(actor=request.user, patient_id=patient_id)
    return render(request, "records/breakglass/summary.html", {"chart": record})


@require_POST
@capability_required(C.BREAK_GLASS)
def end(request: HttpRequest, grant_id: int) -> HttpResponse:
    """End one's own emergency access now; the chart closes again (404) for this patient."""
    breakglass.break_glass_end(actor=request.user, grant_id=grant_id)
    messages.success(request, "Emergency access ended.")
    return redirect("records:emergency")
