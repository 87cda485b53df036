"""Security system checks that refuse unsafe configuration (tagged ``security``).

They run with every ``manage.py`` command that checks the project, and ``wsgi.py``/``asgi.py`` run
them before serving a single request (:func:`refuse_unsafe_start`), because gunicorn would otherwise
start without ever calling the check framework. An *error* stops the start; warnings are advice.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections

from healthcrypt.crypto import Keyring, decode_key

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]", "testserver"}


@register(Tags.security)
def check_required_secrets(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every required secret must be set (production never falls back to a default)."""
    return [
        Error(
            f"{name} is not set.",
            hint=f"Set the environment variable {name}, or {name}_FILE naming a file that holds it "
            "(see .env.example; `python manage.py generate_secrets` makes a fresh set).",
            id="healthcrypt.E001",
        )
        for name in getattr(settings, "MISSING_SECRETS", [])
    ]


@register(Tags.security)
def check_key_material(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Keys must be well formed and kept apart: one key may never serve two purposes."""
    errors: list[CheckMessage] = []
    raw_keys: dict[str, bytes] = {}
    missing = set(getattr(settings, "MISSING_SECRETS", []))
    if "FIELD_ENCRYPTION_KEYS" not in missing:
        try:
            for kid, key in Keyring.parse(settings.FIELD_ENCRYPTION_KEYS).keys:
                raw_keys[f"FIELD_ENCRYPTION_KEYS key '{kid}'"] = key
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="healthcrypt.E002"))
    for name in ("BLIND_INDEX_KEY", "AUDIT_HMAC_KEY", "AUDIT_MARKER_KEY", "RESEARCH_PSEUDONYM_KEY"):
        if name in missing:
            continue
        try:
            raw_keys[name] = decode_key(getattr(settings, name), name=name)
        except ImproperlyConfigured as exc:
            errors.append(
                Error(str(exc), hint="Generate one with `python manage.py generate_secrets`.", id="healthcrypt.E002")
            )
    seen: dict[bytes, str] = {}
    for name, key in raw_keys.items():
        if key in seen:
            errors.append(
                Error(
                    f"{name} is the same key as {seen[key]}.",
                    hint="Use a separate random key for each purpose.",
                    id="healthcrypt.E003",
                )
            )
        seen.setdefault(key, name)
    return errors


@register(Tags.security)
def check_debug_exposure(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """DEBUG pages leak settings and data; they may only ever be served to this machine."""
    if not settings.DEBUG:
        return []
    public = [host for host in settings.ALLOWED_HOSTS if host not in _LOCAL_HOSTS]
    if not public:
        return []
    return [
        Error(
            "DEBUG is on while ALLOWED_HOSTS admits non-local hosts " + ", ".join(public) + ".",
            hint="Set DEBUG=0 for any deployment reachable from another machine.",
            id="healthcrypt.E004",
        )
    ]


@register(Tags.security)
def check_cookies(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Outside DEBUG, session and CSRF cookies must never travel over plain HTTP."""
    if settings.DEBUG:
        return []
    return [
        Error(
            f"{name} is off while DEBUG is off.", hint=f"Remove {name}=0 from the environment.", id="healthcrypt.E005"
        )
        for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")
        if not getattr(settings, name)
    ]


@register(Tags.security)
def check_password_hashers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """New passwords are hashed with Argon2 (STYLE.md); a weaker first hasher is refused in production."""
    if settings.DEBUG or getattr(settings, "TESTING", False):
        return []
    first = settings.PASSWORD_HASHERS[0] if settings.PASSWORD_HASHERS else ""
    if first.endswith("Argon2PasswordHasher"):
        return []
    return [Error("The first PASSWORD_HASHERS entry is not Argon2.", id="healthcrypt.E006")]


def _security_checks() -> list[CheckMessage]:
    # With the default database, so that the audit guards are checked too (audit/checks.py); the
    # connection is closed again, so that no worker forked after this inherits it.
    try:
        return run_checks(
            tags=[Tags.security], include_deployment_checks=not settings.DEBUG, databases=[DEFAULT_DB_ALIAS]
        )
    finally:
        connections.close_all()


def refuse_unsafe_start() -> None:
    """Run the security checks and raise ImproperlyConfigured if any of them is an error.

    Called by wsgi.py and asgi.py, so that a server started without ``manage.py`` fails closed too.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        messages = _security_checks()
    else:
        # ASGI servers import the application inside their event loop, where Django refuses database
        # access: the checks run in a thread of their own there.
        with ThreadPoolExecutor(max_workers=1) as pool:
            messages = pool.submit(_security_checks).result()
    errors = [message for message in messages if message.is_serious()]
    if errors:
        lines = "\n".join(f"  {message.id}: {message.msg} {message.hint or ''}".rstrip() for message in errors)
        raise ImproperlyConfigured(f"Healthcrypt refuses to start:\n{lines}")


@register(Tags.security)
def check_column_bound_ciphertext(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn while old column-bound values (hc1 tokens, format 1 files) are accepted.

    They are bound to their column but not their row, so while this is on a value copied from
    another row of the same column decrypts. It is meant for the time of one rotate_keys run
    (docs/operations/keys.md), so it warns rather than refuses to start.
    """
    if not getattr(settings, "FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND", False):
        return []
    return [
        Warning(
            "FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND is on: column-bound ciphertexts are accepted, so a value "
            "copied from another row of the same column is not detected.",
            hint="Run `python manage.py rotate_keys` until it reports no column-bound values left, then remove "
            "FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND from the environment.",
            id="healthcrypt.W020",
        )
    ]
