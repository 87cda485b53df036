"""Typed readers for configuration taken from the environment.

Every knob of Healthcrypt comes from the environment (DESIGN.md §11). Secrets may also come from
a file named by ``NAME_FILE`` (Docker/Kubernetes secrets, systemd credentials), so that they never
have to sit in a process listing or a unit file. Errors name the variable, never its value.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from base64 import urlsafe_b64encode
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the variable as a string, or ``default`` when it is unset."""
    source = os.environ if environ is None else environ
    return source.get(name, default)


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    """Return the variable as a boolean; anything but a clear yes/no is a configuration error."""
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Return the variable as an integer (at least ``minimum`` when given), refusing anything else."""
    raw = env_str(name, environ=environ)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}.")
    return value


def env_float(
    name: str, default: float, *, minimum: float | None = None, environ: Mapping[str, str] | None = None
) -> float:
    """Return the variable as a finite number (at least ``minimum`` when given), refusing anything else."""
    raw = env_str(name, environ=environ)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number.") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number.")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g}.")
    return value


def env_choice(name: str, default: str, choices: Sequence[str], *, environ: Mapping[str, str] | None = None) -> str:
    """Return the variable as one of ``choices`` (case and spaces ignored), refusing anything else."""
    raw = env_str(name, environ=environ)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}.")
    return value


def env_list(name: str, default: list[str], *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Return a comma-separated variable as a list of non-empty, stripped items."""
    raw = env_str(name, environ=environ)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, *, environ: Mapping[str, str] | None = None) -> str | None:
    """Return a secret from ``NAME`` or from the file named by ``NAME_FILE``; None when neither is set.

    Setting both is refused: two sources for one secret hide which one is in force.
    """
    source = os.environ if environ is None else environ
    direct = source.get(name)
    file_name = source.get(f"{name}_FILE")
    if direct and file_name:
        raise ImproperlyConfigured(f"Set either {name} or {name}_FILE, not both.")
    if file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE names a file that cannot be read ({exc.strerror}).") from None
        return value or None
    return direct or None


def _hospital_jwks() -> str:
    """Hospital JOSE keys (exchange/keys.py): one ES384 signing key and one
    ECDH-ES+A256KW encryption key, private, as one line of JSON."""
    from joserfc.jwk import ECKey

    keys = [
        dict(
            ECKey.generate_key(
                "P-384", {"kid": f"{use}-{secrets.token_hex(4)}", "use": use, "alg": alg}, private=True
            ).as_dict(private=True)
        )
        for use, alg in (("sig", "ES384"), ("enc", "ECDH-ES+A256KW"))
    ]
    return json.dumps({"keys": keys}, separators=(",", ":"))


def _random_key() -> str:
    return urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


# How each throwaway development secret is made. Production secrets are made the same way by
# `manage.py generate_secrets`, but an operator stores them, not this file.
SECRET_GENERATORS: dict[str, Callable[[], str]] = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "FIELD_ENCRYPTION_KEYS": lambda: f"dev1:{_random_key()}",
    "BLIND_INDEX_KEY": _random_key,
    "AUDIT_HMAC_KEY": _random_key,
    "AUDIT_MARKER_KEY": _random_key,
    "RESEARCH_PSEUDONYM_KEY": _random_key,
    # Not a required secret (only the checkpoint job needs it), but demo mode makes one: an Ed25519
    # private key is any 32 random bytes.
    "AUDIT_CHECKPOINT_SIGNING_KEY": _random_key,
    # Not a required secret either (only packages need it): the hospital's JOSE keys, a private JWKS.
    "HOSPITAL_JWKS": _hospital_jwks,
}


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a simple ``NAME=value`` file (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def load_dev_secrets(path: Path, names: list[str]) -> dict[str, str]:
    """Return development secrets from ``path``, generating and saving any that are missing.

    Only ever called in DEBUG (demo/development) mode. The file is created with mode 0600 and is
    ignored by git; deleting it simply makes a new throwaway set (and makes old demo data unreadable,
    which is the point of throwaway keys).
    """
    values = read_env_file(path)
    missing = [name for name in names if not values.get(name)]
    if missing:
        for name in missing:
            values[name] = SECRET_GENERATORS[name]()
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            "# Throwaway secrets for demo/development mode, generated by Healthcrypt.",
            "# Never use these in production; delete this file to start over with new keys.",
        ]
        lines += [f"{key}={value}" for key, value in values.items()]
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    return values
