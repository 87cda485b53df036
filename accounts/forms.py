from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm

CODE_HELP = "The 6-digit code your authenticator app shows now."
_TOTP_RE = re.compile(r"^\d{6}$")
_RECOVERY_RE = re.compile(r"^[a-z2-7]{4}-?[a-z2-7]{4}$")


def _code_field(label: str = "One-time code", help_text: str = CODE_HELP) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=16,
        strip=True,
        help_text=help_text,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "text",
                "autocapitalize": "none",
                "spellcheck": "false",
            }
        ),
    )


class PasswordStepForm(AuthenticationForm):
    """Step one of sign-in. django-axes sees the attempt through ``authenticate(request, ...)``."""


class CodeForm(forms.Form):
    """A one-time code: six digits from the authenticator, or a recovery code when ``allow_recovery``."""

    otp_token = _code_field()

    def __init__(self, *args: Any, allow_recovery: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allow_recovery = allow_recovery
        if allow_recovery:
            self.fields["otp_token"].help_text = CODE_HELP + " Lost your phone? Enter one of your recovery codes."

    def clean_otp_token(self) -> str:
        token = str(self.cleaned_data["otp_token"]).replace(" ", "").lower()
        if _TOTP_RE.match(token) or (self.allow_recovery and _RECOVERY_RE.match(token)):
            return token
        if self.allow_recovery:
            raise forms.ValidationError(
                "Enter the 6 digits from your authenticator app, or a recovery code like abcd-efgh."
            )
        raise forms.ValidationError("Enter the 6 digits from your authenticator app.")


class PasswordChangeWithCodeForm(PasswordChangeForm):
    """Current password, new password twice (Django's validators), and a code from the authenticator."""

    otp_token = _code_field()

    def clean_otp_token(self) -> str:
        token = str(self.cleaned_data["otp_token"]).replace(" ", "")
        if not _TOTP_RE.match(token):
            raise forms.ValidationError("Enter the 6 digits from your authenticator app.")
        return token
