from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_out, user_login_failed

        from accounts import receivers

        user_login_failed.connect(receivers.on_user_login_failed, dispatch_uid="accounts.login_failed")
        user_logged_out.connect(receivers.on_user_logged_out, dispatch_uid="accounts.logged_out")
        user_locked_out.connect(receivers.on_user_locked_out, dispatch_uid="accounts.locked_out")


class AccountsAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with Healthcrypt's site (accounts/admin_site.py) as ``admin.site``.

    Named in INSTALLED_APPS by its full path; ``default = False`` keeps ``accounts`` itself on
    ``AccountsConfig``.
    """

    default = False

    default_site = "accounts.admin_site.HealthcryptAdminSite"
