"""Healthcrypt settings: one file, every knob from the environment (DESIGN.md §11).

`.env.example` lists every variable. In production (DEBUG off) nothing secret has a default: a
missing secret is reported by a security system check (healthcrypt/checks.py) that stops
`manage.py` and the WSGI/ASGI entry points from starting. In demo/development mode (DEBUG on)
throwaway secrets are generated into an ignored local file on first run.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from healthcrypt.env import env_bool, env_choice, env_float, env_int, env_list, env_secret, env_str, load_dev_secrets

BASE_DIR = Path(__file__).resolve().parent.parent
# Environment variables that would switch the bench baseline on: refused below.
BENCH_BASELINE_SWITCHES = ("BENCH_BASELINE", "HEALTHCRYPT_BENCH_BASELINE")

# Lets the generic classes that mypy sees (Field[...], ModelAdmin[...], ...) be subscripted at run time.
django_stubs_ext.monkeypatch()

# Fail closed: DEBUG is off unless asked for.
DEBUG = env_bool("DEBUG", False)

# The load test's baseline (bench/load/) serves patient pages from plaintext rows with no policy and
# no audit. Only the bench-only settings module bench/load/settings_baseline.py turns it on, in Python;
# a switch in the environment is refused, so no deployment can enable it with a variable.
BENCH_BASELINE = False
if any(os.environ.get(name) for name in BENCH_BASELINE_SWITCHES):
    raise ImproperlyConfigured(
        "The bench baseline (no access policy, no audit) cannot be enabled through the environment: "
        f"unset {', '.join(BENCH_BASELINE_SWITCHES)}."
    )

# --- Secrets -------------------------------------------------------------------------------------
# Each is read from NAME or NAME_FILE. None of them is derived from another: a leaked SECRET_KEY
# (sessions, CSRF) must not reveal patient data, and a leaked field key must not forge sessions.
REQUIRED_SECRETS = [
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEYS",
    "BLIND_INDEX_KEY",
    "AUDIT_HMAC_KEY",
    "AUDIT_MARKER_KEY",
    "RESEARCH_PSEUDONYM_KEY",
]
_secrets = {name: env_secret(name) for name in REQUIRED_SECRETS}

DEV_SECRETS_FILE = Path(env_str("HEALTHCRYPT_DEV_SECRETS_FILE") or BASE_DIR / ".dev-secrets.env")
if DEBUG and not all(_secrets.values()):
    _dev = load_dev_secrets(DEV_SECRETS_FILE, [name for name, value in _secrets.items() if not value])
    _secrets = {name: value or _dev.get(name) for name, value in _secrets.items()}

# Names of required secrets that are still missing; checks.py turns each into a security error.
MISSING_SECRETS = [name for name, value in _secrets.items() if not value]

# An empty SECRET_KEY makes Django itself refuse to sign anything, so even code that skips the
# system checks cannot run with a guessable key.
SECRET_KEY = _secrets["SECRET_KEY"] or ""

# Field encryption keyring, "kid:base64-key" entries separated by commas; the first encrypts, all
# decrypt (records/crypto.py, docs/operations/keys.md).
FIELD_ENCRYPTION_KEYS = _secrets["FIELD_ENCRYPTION_KEYS"] or ""
# Old column-bound ciphertexts (hc1, bound to their column but not their row) are refused unless this
# is on. Turn it on only while `manage.py rotate_keys` moves existing rows to the row-bound format
# (docs/operations/keys.md); a security check warns while it is on.
FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND = env_bool("FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND", False)
# HMAC key for blind indexes (exact-match lookup of encrypted values).
BLIND_INDEX_KEY = _secrets["BLIND_INDEX_KEY"] or ""
# HMAC key for the audit hash chain.
AUDIT_HMAC_KEY = _secrets["AUDIT_HMAC_KEY"] or ""
# HMAC key of the per-transaction actor marker that proves a clinical-table write came from the
# application (records/db.py); the database never holds it, so a marker cannot be forged in SQL.
AUDIT_MARKER_KEY = _secrets["AUDIT_MARKER_KEY"] or ""
# HMAC key of research pseudonyms and per-patient date shifts (research/pseudonyms.py). Whoever holds
# it can link a dataset's pseudonyms back to records, so it never leaves the hospital's keyring.
RESEARCH_PSEUDONYM_KEY = _secrets["RESEARCH_PSEUDONYM_KEY"] or ""
# Ed25519 private key (base64url 32-byte seed) that signs audit checkpoints (audit/checkpoints.py).
# Optional for the web workers: only `manage.py audit_checkpoint` needs it, so a deployment can keep
# it on the host that runs the timer alone. Demo mode generates a throwaway one.
AUDIT_CHECKPOINT_SIGNING_KEY = env_secret("AUDIT_CHECKPOINT_SIGNING_KEY") or ""
if DEBUG and not AUDIT_CHECKPOINT_SIGNING_KEY:
    AUDIT_CHECKPOINT_SIGNING_KEY = load_dev_secrets(DEV_SECRETS_FILE, ["AUDIT_CHECKPOINT_SIGNING_KEY"])[
        "AUDIT_CHECKPOINT_SIGNING_KEY"
    ]

# --- Hosts and HTTPS ------------------------------------------------------------------------------
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
if env_bool("BEHIND_TLS_PROXY", False):
    # Only trust X-Forwarded-Proto when a proxy that sets it is really in front of us.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_NAME = "hc_session"
CSRF_COOKIE_NAME = "hc_csrftoken"
# Absolute session lifetime (the idle time-out is enforced per request; see accounts).
SESSION_COOKIE_AGE = env_int("SESSION_ABSOLUTE_SECONDS", 12 * 60 * 60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_SECONDS", 15 * 60)
# Break the glass (DESIGN.md §8): how long an emergency grant lasts, in minutes. Never more than a
# shift (12 hours) whatever the environment says, and at least one minute.
BREAK_GLASS_MAX_MINUTES = 12 * 60
BREAK_GLASS_MINUTES = max(1, min(env_int("BREAK_GLASS_MINUTES", 60), BREAK_GLASS_MAX_MINUTES))

# Research datasets (research/, docs/research/workflow.md): where ``deid_export`` writes a request's
# files when no --out is given (request-<id>/ under it; the only place the download looks), and how
# long a researcher's single-use download link lasts (1 minute to 1 day).
RESEARCH_DATASETS_DIR = Path(env_str("RESEARCH_DATASETS_DIR") or BASE_DIR / "var" / "research-datasets")
RESEARCH_DOWNLOAD_MINUTES = max(1, min(env_int("RESEARCH_DOWNLOAD_MINUTES", 60), 24 * 60))

# FHIR R4 import (exchange/fhir/, docs/operations/fhir-import.md): the official JSON schema, the
# largest bundle file read (bytes) and the deepest JSON nesting accepted, both checked before parsing
# goes further or anything is written.
FHIR_SCHEMA_PATH = Path(
    env_str("FHIR_SCHEMA_PATH") or BASE_DIR.parent / "shared" / "data" / "fhir-r4-schema" / "fhir.schema.json"
)
FHIR_MAX_BUNDLE_BYTES = env_int("FHIR_MAX_BUNDLE_BYTES", 50 * 1024 * 1024, minimum=1)
FHIR_MAX_JSON_DEPTH = env_int("FHIR_MAX_JSON_DEPTH", 64, minimum=8)

# --- Applications ---------------------------------------------------------------------------------
INSTALLED_APPS = [
    "accounts.apps.AccountsAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # django-otp's framework; the devices (TOTP with an encrypted secret, hashed recovery codes)
    # are accounts' own models (docs/decisions/0004-sign-in.md).
    "django_otp",
    "axes",
    "auditlog",
    "healthcrypt.apps.HealthcryptConfig",
    "accounts",
    "records",
    "audit",
    "exchange",
    "research",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "healthcrypt.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Address, user agent, request id and session reference for every audit event of the request.
    "audit.middleware.AuditContextMiddleware",
    # Actor and address for django-auditlog's change history (admin and shell writes).
    "auditlog.middleware.AuditlogMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Idle time-out, absolute lifetime, and no session without a verified second factor.
    "accounts.middleware.SessionSecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Every URL requires a signed-in user unless its view is marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Refusals of the record's read/write paths become 403/404, an unrecorded access a 503.
    "records.middleware.RecordAccessErrorsMiddleware",
    # AxesMiddleware must be last: it turns a lockout into the "locked out" response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "healthcrypt.urls"
WSGI_APPLICATION = "healthcrypt.wsgi.application"
ASGI_APPLICATION = "healthcrypt.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# A request that fails half-way leaves nothing half-written.
DATABASES["default"]["ATOMIC_REQUESTS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication -------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # Axes first, so a locked-out username + IP is refused before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"

# django-axes: lock a username + IP pair after AXES_FAILURE_LIMIT failures, for a cool-off that is
# never permanent, so nobody can lock a clinician out for good.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
# Password spraying: one address is locked after this many failures over all usernames within the
# cool-off (accounts/lockout.py). Higher than the per-account limit, since a ward may share one
# address behind a proxy; set AXES_PROXY_COUNT so that the address is the workstation's.
AXES_ADDRESS_FAILURE_LIMIT = env_int("AXES_ADDRESS_FAILURE_LIMIT", 20)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_HANDLER = "accounts.lockout.AddressAwareHandler"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_IPWARE_PROXY_COUNT = env_int("AXES_PROXY_COUNT", 0)
# What was typed as a username is kept only if it is an account's; anything else as a keyed hash.
AXES_USERNAME_CALLABLE = "accounts.services.axes_username"
# Never store the password field.
AXES_SENSITIVE_PARAMETERS = ["password", "otp_token", "username"]

# Step-up: how recently a TOTP code must have been entered before a chart is shown.
STEP_UP_SECONDS = env_int("STEP_UP_SECONDS", 10 * 60)
# How long the one-time-code step may follow the password step.
LOGIN_CODE_SECONDS = env_int("LOGIN_CODE_SECONDS", 5 * 60)
# The name authenticator apps show next to the code.
OTP_ISSUER = env_str("OTP_ISSUER", "Healthcrypt") or "Healthcrypt"
# After each wrong code a device waits OTP_THROTTLE_FACTOR * 2^(failures-1) seconds.
OTP_THROTTLE_FACTOR = env_int("OTP_THROTTLE_FACTOR", 1)
# How many one-time recovery codes enrolment hands out.
RECOVERY_CODE_COUNT = 10

# --- Internationalisation -------------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC") or "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or BASE_DIR / "var" / "media")
# Small uploads stay in memory; larger ones are spooled to disk encrypted under a throwaway key
# (records/uploads.py), never in plaintext as Django's own temporary-file handler would.
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "records.uploads.EncryptedTemporaryFileUploadHandler",
]
# Largest attachment (e.g. an imaging study) accepted, in bytes.
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 256 * 1024 * 1024)

# --- Cache ----------------------------------------------------------------------------------------
_redis_url = env_str("REDIS_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _redis_url}
        if _redis_url
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Email (alert notifications, audit/alerts.py) -------------------------------------------------
# The demo prints mail to the console; production sends through SMTP. Messages carry no patient
# data (a link to the alert only), and SITE_URL makes that link absolute.
EMAIL_BACKEND = (
    env_str(
        "EMAIL_BACKEND",
        "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
    )
    or "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "healthcrypt@localhost") or "healthcrypt@localhost"
SITE_URL = env_str("SITE_URL", "") or ""

# --- Partner API (exchange/api) -------------------------------------------------------------------
# The API's public base URL, e.g. https://ehr.example.org/fhir/r4: a client assertion's aud must be
# its token URL (FHIR_BASE_URL + /auth/token). Unset, the URL the request reached is used.
FHIR_BASE_URL = env_str("FHIR_BASE_URL", "") or ""
# Access tokens' lifetime in seconds; SMART Backend Services allows at most 300.
PARTNER_TOKEN_SECONDS = env_int("PARTNER_TOKEN_SECONDS", 300)
# Token requests accepted per minute from one client address, before any assertion is checked
# (verifying a signature costs CPU; a partner needs a token every few minutes).
PARTNER_TOKEN_REQUESTS_PER_MINUTE = env_int("PARTNER_TOKEN_REQUESTS_PER_MINUTE", 30, minimum=1)

# --- Logging --------------------------------------------------------------------------------------
# Never log request bodies or PHI; Django's request logger is kept at WARNING and our own modules
# log identifiers only (STYLE.md).
LOG_LEVEL = env_str("LOG_LEVEL", "INFO") or "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
        # Axes logs usernames and IPs at INFO on every attempt; its lockouts still log at WARNING.
        "axes": {"level": "WARNING"},
    },
}

# --- Audit ----------------------------------------------------------------------------------------
# Requests insert audit events unsealed; the sealer links them into the hash chains (audit/sealer.py):
# `manage.py seal_audit --loop` beside the web workers. With SEAL_ON_COMMIT (default on SQLite, the demo's
# single process) each transaction seals what it wrote right after it commits instead.
AUDIT_SEAL_ON_COMMIT = env_bool("AUDIT_SEAL_ON_COMMIT", DATABASES["default"]["ENGINE"].endswith("sqlite3"))
# How often the sealer loop looks for new events, and how old an unsealed event may be before
# `verify_audit` reports it (the sealer is down or stuck). Seconds.
AUDIT_SEAL_INTERVAL = env_float("AUDIT_SEAL_INTERVAL", 0.5, minimum=0.01)
AUDIT_SEAL_MAX_DELAY = env_int("AUDIT_SEAL_MAX_DELAY", 10, minimum=1)
# The loop looks for unsealed direct changes among the most recent ids every round, and over the whole
# table every this many seconds (audit/sealing.py: a row whose transaction committed very late).
AUDIT_SEAL_FULL_INTERVAL = env_float("AUDIT_SEAL_FULL_INTERVAL", 60.0, minimum=0.01)
# Where the anomaly rules judge each access (docs/decisions/0009-anomaly-rules.md, "Where the rules run"):
# "request" (in the request that read the chart) or "sealer" (by the sealer, right after it sealed the
# access: an alert up to a sealing interval later, no rule work on the request path). Default: "sealer"
# where a separate sealer process runs (SEAL_ON_COMMIT off: PostgreSQL), "request" where the sealer runs
# in-process after each commit anyway (SQLite, the demo). Break-the-glass grants are always judged in the
# request (an emergency grant nobody reviews is refused), sign-in storms too.
ANOMALY_RULES_AT = env_choice(
    "ANOMALY_RULES_AT", "request" if AUDIT_SEAL_ON_COMMIT else "sealer", ("request", "sealer")
)
# With "sealer": the sealer loop judges at most this often (seconds), whatever it sealed meanwhile. Each
# judgement reads its batch's baselines, actors, patients and orders, whatever the number of new accesses
# (it once re-read their hour so far: judged every sealing round, 0.5 s, that cost the database more than
# all the requests did under the load test, issue 11; audit/detection/running.py). An alert comes
# at most about this much later; it must stay below AUDIT_SEAL_MAX_DELAY (verify_audit reports accesses
# left unjudged for longer).
ANOMALY_RULES_JUDGE_INTERVAL = env_float("ANOMALY_RULES_JUDGE_INTERVAL", 5.0, minimum=0.01)
if ANOMALY_RULES_JUDGE_INTERVAL >= AUDIT_SEAL_MAX_DELAY:
    raise ImproperlyConfigured(
        "ANOMALY_RULES_JUDGE_INTERVAL must be shorter than AUDIT_SEAL_MAX_DELAY (accesses older than the "
        "delay and still unjudged are reported by verify_audit)."
    )
# Events are kept at least this long (ASTM E2147); the application itself never deletes any.
AUDIT_RETENTION_YEARS = max(10, env_int("AUDIT_RETENTION_YEARS", 10))
# Where `manage.py audit_checkpoint` appends signed checkpoints: a directory on storage the database
# host cannot rewrite (WORM bucket mount, append-only volume). Empty: pass --out.
AUDIT_CHECKPOINT_DIR = env_str("AUDIT_CHECKPOINT_DIR") or ""
# Optionally also send each checkpoint to syslog: a socket path (/dev/log) or host:port (UDP).
AUDIT_CHECKPOINT_SYSLOG = env_str("AUDIT_CHECKPOINT_SYSLOG") or ""
# The Ed25519 public key (base64url, 32 bytes) that `verify_audit --checkpoints` trusts. Keep a copy
# outside the database and the application host; empty: derived from the signing key.
AUDIT_CHECKPOINT_PUBLIC_KEY = env_str("AUDIT_CHECKPOINT_PUBLIC_KEY") or ""
# Only masked values in django-auditlog's history (audit/masking.py).
AUDITLOG_MASK_CALLABLE = "audit.masking.redact"

# --- Healthcrypt ----------------------------------------------------------------------------------
HOSPITAL_NAME = env_str("HOSPITAL_NAME", "Healthcrypt General Hospital") or "Healthcrypt General Hospital"
CSRF_FAILURE_VIEW = "healthcrypt.views.csrf_failure"

# --- Hospital keys and packages (exchange/keys.py, exchange/packages.py, docs/operations/packages.md)
# The hospital's own JOSE key pairs (ES384 signing, ECDH-ES+A256KW encryption), a JWKS with the
# private keys: the file named by HOSPITAL_JWKS_FILE (re-read when it changes, so a rotation needs no
# restart) or the JSON in HOSPITAL_JWKS, not both. Demo mode makes throwaway ones.
HOSPITAL_JWKS_FILE = env_str("HOSPITAL_JWKS_FILE") or ""
HOSPITAL_JWKS = env_str("HOSPITAL_JWKS") or ""
if DEBUG and not HOSPITAL_JWKS and not HOSPITAL_JWKS_FILE:
    HOSPITAL_JWKS = load_dev_secrets(DEV_SECRETS_FILE, ["HOSPITAL_JWKS"])["HOSPITAL_JWKS"]
# Who we are in a package: its "iss" when we send, the "aud" it must name when a partner sends.
PACKAGE_ISSUER = env_str("PACKAGE_ISSUER") or HOSPITAL_NAME
# The largest package file read (bytes), checked before anything else is done with it.
PACKAGE_MAX_BYTES = env_int("PACKAGE_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
# How long a package we send stays valid, and the longest validity we accept on one we receive.
PACKAGE_LIFETIME_SECONDS = env_int("PACKAGE_LIFETIME_SECONDS", 3 * 24 * 3600, minimum=60)
PACKAGE_MAX_LIFETIME_SECONDS = env_int("PACKAGE_MAX_LIFETIME_SECONDS", 30 * 24 * 3600, minimum=60)

# --- HL7 v2 interface (exchange/hl7/, docs/operations/hl7.md) -------------------------------------
# The service account that HL7 messages are written as: every change event of an ingested message
# names it. It must exist, be active and have no usable password (it is a machine, not a person).
HL7_INTERFACE_USERNAME = env_str("HL7_INTERFACE_USERNAME", "hl7-interface") or "hl7-interface"
# The assigning authorities (PID-3.4) whose identifiers are this hospital's MRNs. Empty: the first
# PID-3 identifier of type MR (else the first identifier) is the MRN.
HL7_ASSIGNING_AUTHORITIES = env_list("HL7_ASSIGNING_AUTHORITIES", [])
# The largest message (or MLLP frame) accepted, in bytes; a larger one is refused, never buffered.
HL7_MAX_MESSAGE_BYTES = env_int("HL7_MAX_MESSAGE_BYTES", 1024 * 1024, minimum=1024)
# The MLLP listener's connections at once, in all and from one address; one over is closed unread.
# Each may buffer up to HL7_MAX_MESSAGE_BYTES. An engine keeps one or a few open per channel.
HL7_MAX_CONNECTIONS = env_int("HL7_MAX_CONNECTIONS", 16, minimum=1)
HL7_MAX_CONNECTIONS_PER_ADDRESS = env_int("HL7_MAX_CONNECTIONS_PER_ADDRESS", 4, minimum=1)
# The departments (codes) that orders received in ORM^O01 go to; empty: the only one of that kind.
HL7_LAB_DEPARTMENT = env_str("HL7_LAB_DEPARTMENT") or ""
HL7_RADIOLOGY_DEPARTMENT = env_str("HL7_RADIOLOGY_DEPARTMENT") or ""
