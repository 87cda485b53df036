from __future__ import annotations

import pytest
from django.db import models
from django.test import override_settings
from django.test.utils import isolate_apps

from healthcrypt import checks
from healthcrypt.crypto import generate_key
from healthcrypt.fields import RowIdentity, encrypt


def ids(messages: list[object]) -> list[str]:
    return [m.id for m in messages]  # type: ignore[attr-defined]


def test_same_key_for_two_purposes_is_refused() -> None:
    key = generate_key()
    with override_settings(FIELD_ENCRYPTION_KEYS=f"k1:{key}", BLIND_INDEX_KEY=key):
        assert "healthcrypt.E003" in ids(checks.check_key_material())


def test_duplicate_key_id_in_keyring_is_refused() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=f"k1:{generate_key()},k1:{generate_key()}"):
        messages = checks.check_key_material()
    assert "healthcrypt.E002" in ids(messages)
    assert "twice" in messages[0].msg


def test_test_configuration_passes_every_security_check() -> None:
    assert checks.check_key_material() == []
    assert checks.check_required_secrets() == []
    assert checks.check_cookies() == []


@override_settings(DEBUG=True, ALLOWED_HOSTS=["127.0.0.1", "ehr.hospital.example"])
def test_debug_on_a_public_host_is_refused() -> None:
    messages = checks.check_debug_exposure()
    assert ids(messages) == ["healthcrypt.E004"]
    assert "ehr.hospital.example" in messages[0].msg


@override_settings(DEBUG=True, ALLOWED_HOSTS=["127.0.0.1", "localhost"])
def test_debug_on_localhost_only_is_allowed() -> None:
    assert checks.check_debug_exposure() == []


@pytest.mark.parametrize("name", ["SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"])
def test_insecure_cookies_are_refused_outside_debug(name: str) -> None:
    with override_settings(**{name: False}):
        assert ids(checks.check_cookies()) == ["healthcrypt.E005"]


@override_settings(TESTING=False, PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
def test_weak_first_password_hasher_is_refused_in_production() -> None:
    assert ids(checks.check_password_hashers()) == ["healthcrypt.E006"]


def test_accepting_column_bound_ciphertext_is_warned_about() -> None:
    assert checks.check_column_bound_ciphertext() == []
    with override_settings(FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND=True):
        (warning,) = checks.check_column_bound_ciphertext()
    assert warning.id == "healthcrypt.W020"
    assert not warning.is_serious()
    assert "rotate_keys" in (warning.hint or "")


@isolate_apps("records")
def test_a_model_with_encrypted_fields_but_no_row_identity_is_refused() -> None:
    class Unbound(models.Model):  # noqa: DJ008
        secret = encrypt(models.CharField(max_length=10))

        class Meta:
            app_label = "records"

    class Bound(RowIdentity):
        secret = encrypt(models.CharField(max_length=10))

        class Meta:
            app_label = "records"

    assert [e.id for e in Unbound._meta.get_field("secret").check()] == ["healthcrypt.E020"]
    assert Bound._meta.get_field("secret").check() == []
