"""The research key, read from the keyring's settings (docs/operations/keys.md)."""

from __future__ import annotations

from django.conf import settings

from healthcrypt.crypto import decode_key


def research_pseudonym_key() -> bytes:
    """Return ``RESEARCH_PSEUDONYM_KEY`` as 32 raw bytes.

    Raises ``ImproperlyConfigured`` when it is missing or malformed: no dataset is pseudonymised with
    a guessable or empty key (the system checks refuse to start without it as well).
    """
    return decode_key(settings.RESEARCH_PSEUDONYM_KEY, name="RESEARCH_PSEUDONYM_KEY")
