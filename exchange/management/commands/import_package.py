"""``manage.py import_package FILE --actor USERNAME``: open a partner's signed and encrypted package and
import its bundle (exchange/packages.py, docs/operations/packages.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.roles import Capability, has_capability
from exchange.fhir.importer import ImportFailed
from exchange.fhir.validate import BundleInvalid
from exchange.keys import HospitalKeysUnavailable
from exchange.packages import PackageRefused, package_import


class Command(BaseCommand):
    help = (
        "Verify, decrypt and import a package a partner sent (JWS signed by a registered partner key inside a "
        "JWE to our key). Refused packages write nothing; the reason is printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the package file (compact JWE)")
        parser.add_argument("--actor", required=True, help="username of the account the change events name")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["actor"]).first()
        if user is None or not user.is_active or not has_capability(user, Capability.IMPORT_RECORDS):
            raise CommandError("--actor must be an active account whose role may import records (import_records).")
        path: Path = options["file"]
        limit = int(settings.PACKAGE_MAX_BYTES)
        try:
            # Never more than the limit + 1 bytes: a huge file is refused without being read whole.
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as error:
            raise CommandError(f"Cannot read {path} ({error.strerror}).") from None
        try:
            imported = package_import(data, actor=user)
        except PackageRefused as refusal:
            raise CommandError(f"Package refused ({refusal.reason}): {refusal.message} Nothing was imported.") from None
        except BundleInvalid as error:
            for problem in error.problems[:20]:
                self.stderr.write(f"  {problem}")
            raise CommandError("Package refused (invalid bundle): nothing was imported.") from None
        except ImportFailed as error:
            raise CommandError(f"Package refused (import failed: {error.problem}): nothing was imported.") from None
        except HospitalKeysUnavailable as error:
            raise CommandError(f"Our keys are not available: {error}") from None
        package = imported.package
        self.stdout.write(
            f"Package {package.package_id} from {package.partner.name} imported (SHA-256 {package.digest})."
        )
        for name in sorted(imported.counts):
            count = imported.counts[name]
            self.stdout.write(f"{name:<22}{count.imported:>10}{count.present:>10}{count.skipped:>10}")
