"""The baseline URLconf: the load test's pages at their real paths, served from plaintext rows;
everything else (sign-in, step-up, static pages) is the real application's."""

from __future__ import annotations

from django.urls import include, path

from bench.load.baseline import views

urlpatterns = [
    path("", views.dashboard),
    path("patients/search/", views.search),
    path("patients/<int:patient_id>/", views.chart),
    path("patients/<int:patient_id>/vitals/", views.vitals_new),
    path("orders/<int:order_id>/results/", views.order_result),
    path("", include("healthcrypt.urls")),
]
