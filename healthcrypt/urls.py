from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from healthcrypt import views

urlpatterns = [
    path("", include("accounts.urls")),
    path("", include("records.urls")),
    path("", include("audit.urls")),
    path("", include("exchange.urls")),
    path("", include("research.urls")),
    path("fhir/r4/", include("exchange.api.urls")),
    path(".well-known/", include("exchange.api.wellknown_urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
]

handler400 = "healthcrypt.views.bad_request"
handler403 = "healthcrypt.views.permission_denied"
handler404 = "healthcrypt.views.page_not_found"
handler500 = "healthcrypt.views.server_error"
