"""Print a fresh set of production secrets in .env format, for an operator to store safely."""

from __future__ import annotations

from base64 import urlsafe_b64encode
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.management.base import BaseCommand

from healthcrypt.crypto import decode_key
from healthcrypt.env import SECRET_GENERATORS


class Command(BaseCommand):
    help = "Print a new, random set of every required secret (nothing is written to disk)."
    # Works before the project is configured: that is when it is needed.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        kid = datetime.now(UTC).strftime("k%Y%m%d")
        self.stdout.write("# Healthcrypt secrets generated " + datetime.now(UTC).isoformat(timespec="seconds"))
        self.stdout.write("# Store each in your secret manager and expose it as NAME or NAME_FILE.")
        for name, generate in SECRET_GENERATORS.items():
            value = generate()
            if name == "FIELD_ENCRYPTION_KEYS":
                value = f"{kid}:{value.split(':', 1)[1]}"
            self.stdout.write(f"{name}={value}")
            if name == "AUDIT_CHECKPOINT_SIGNING_KEY":
                # The verifier's copy: keep it away from the database and the application host.
                self.stdout.write(f"# AUDIT_CHECKPOINT_PUBLIC_KEY={checkpoint_public_key(value)}")


def checkpoint_public_key(private: str) -> str:
    """The base64url Ed25519 public key of a checkpoint signing key (audit/checkpoints.py)."""
    key = Ed25519PrivateKey.from_private_bytes(decode_key(private, name="AUDIT_CHECKPOINT_SIGNING_KEY"))
    return urlsafe_b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")
