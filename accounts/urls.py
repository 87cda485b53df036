from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/login/", views.login_password, name="login"),
    path("accounts/login/code/", views.login_code, name="login_code"),
    path("accounts/login/enrol/", views.enrol, name="enrol"),
    path("accounts/verify/", views.step_up, name="step_up"),
    path("accounts/password/", views.password_change, name="password_change"),
    # LogoutView accepts POST only (a GET link could sign people out from another site).
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("security/lockouts/", views.lockouts, name="lockouts"),
    path("security/lockouts/<int:attempt_id>/clear/", views.lockout_clear, name="lockout_clear"),
    path("security/lockouts/address/clear/", views.lockout_clear_address, name="lockout_clear_address"),
]
