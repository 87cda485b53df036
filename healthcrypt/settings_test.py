"""Test settings: the real settings with fixed test keys and fast hashing.

The keys below are public and only ever protect synthetic test data. They are set in the
environment *before* the real settings are read, so the same code path (env_secret) is exercised.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 30)
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "test1:" + "A" * 43)
os.environ.setdefault("BLIND_INDEX_KEY", "B" * 43)
os.environ.setdefault("AUDIT_HMAC_KEY", "C" * 43)
os.environ.setdefault("AUDIT_MARKER_KEY", "D" * 43)
os.environ.setdefault("AUDIT_CHECKPOINT_SIGNING_KEY", "E" * 43)
os.environ.setdefault("RESEARCH_PSEUDONYM_KEY", "F" * 43)
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ["DEBUG"] = os.environ.get("TEST_DEBUG", "0")


def _test_hospital_jwks() -> str:
    """The hospital's JOSE keys for this test run: generated now into a throwaway 0600 file, never
    committed (exchange/keys.py)."""
    from healthcrypt.env import SECRET_GENERATORS

    folder = Path(tempfile.mkdtemp(prefix="healthcrypt-test-keys-"))
    path = folder / "hospital-jwks.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(SECRET_GENERATORS["HOSPITAL_JWKS"]())
    return str(path)


if not os.environ.get("HOSPITAL_JWKS"):
    os.environ.setdefault("HOSPITAL_JWKS_FILE", _test_hospital_jwks())

from healthcrypt.settings import *  # noqa: F403, E402
from healthcrypt.settings import MIDDLEWARE  # noqa: E402

TESTING = True
# Encrypted attachments written by tests go to a throwaway folder, never to the demo's var/media.
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="healthcrypt-test-media-"))
RESEARCH_DATASETS_DIR = Path(tempfile.mkdtemp(prefix="healthcrypt-test-research-"))
# Argon2 is deliberately slow; tests that are about hashing opt back in with override_settings.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]
# The tests judge accesses in the request, whatever the database, as most of them count on an alert being
# there when the request returns; tests of the sealer's judging set "sealer" themselves
# (tests/audit/test_nearline.py).
ANOMALY_RULES_AT = "request"
