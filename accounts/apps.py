from __future__ import annotations

from django.apps import AppConfig


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
