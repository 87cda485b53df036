"""The security team's workspace, beside the lockout desk under /security/ (audit/views_security.py)."""

from __future__ import annotations

from django.urls import path

from audit import views_security as views

app_name = "security"

urlpatterns = [
    path("security/alerts/", views.alert_queue, name="alerts"),
    path("security/alerts/acknowledge/", views.alert_bulk_acknowledge, name="alerts_acknowledge"),
    path("security/alerts/export/", views.alert_export, name="alerts_export"),
    path("security/alerts/<int:alert_id>/", views.alert_detail, name="alert"),
    path("security/alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
    path("security/alerts/<int:alert_id>/assign/", views.alert_assign, name="alert_assign"),
    path("security/alerts/<int:alert_id>/note/", views.alert_note, name="alert_note"),
    path("security/alerts/<int:alert_id>/close/", views.alert_close, name="alert_close"),
    path("security/reports/", views.reports, name="reports"),
    path("security/reports/<slug:slug>.csv", views.report_csv, name="report_csv"),
]
