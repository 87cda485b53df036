"""Print a fresh set of production secrets in .env format, for an operator to store safely."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand

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
