"""The research pages (research/views.py): a researcher's requests and download, compliance's review."""

from __future__ import annotations

from django.urls import path

from research import views

app_name = "research"

urlpatterns = [
    path("research/", views.my_requests, name="requests"),
    path("research/new/", views.request_new, name="request_new"),
    path("research/requests/<int:request_id>/", views.request_detail, name="request"),
    path("research/requests/<int:request_id>/download/", views.download_prepare, name="download_prepare"),
    path("research/download/", views.download, name="download"),
    path("research/review/", views.review_list, name="review"),
    path("research/review/<int:request_id>/", views.review_detail, name="review_detail"),
]
