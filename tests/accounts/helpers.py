from __future__ import annotations

import time

from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP

from accounts.models import TOTPDevice
from tests.factories import TEST_PASSWORD


def current_code(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    """The code an authenticator app would show now for ``device``."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset_steps * device.step
    return f"{totp.token():06d}"


def code_from_secret(base32_secret: str) -> str:
    from base64 import b32decode

    totp = TOTP(b32decode(base32_secret), 30, 0, 6, 0)
    totp.time = time.time()
    return f"{totp.token():06d}"


def password_step(client: Client, username: str, password: str = TEST_PASSWORD, next_url: str | None = None):  # type: ignore[no-untyped-def]
    url = reverse("accounts:login") + (f"?next={next_url}" if next_url else "")
    return client.post(url, {"username": username, "password": password})


def code_step(client: Client, code: str):  # type: ignore[no-untyped-def]
    return client.post(reverse("accounts:login_code"), {"otp_token": code})


def is_signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session
