from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    # LogoutView accepts POST only (a GET link could sign people out from another site).
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
