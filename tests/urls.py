"""The project's URLs plus two test-only views: a chart-like page behind step-up, and an "add data" form."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_http_methods

from accounts.decorators import step_up_required
from healthcrypt.urls import urlpatterns as project_urlpatterns


@step_up_required
def chart_like(request: HttpRequest) -> HttpResponse:
    return HttpResponse("CHART CONTENT")


@require_http_methods(["POST"])
def add_vitals_like(request: HttpRequest) -> HttpResponse:
    return HttpResponse("SAVED", status=201)


urlpatterns = [
    path("test/chart/", chart_like, name="test_chart"),
    path("test/vitals/", add_vitals_like, name="test_vitals"),
    *project_urlpatterns,
]
