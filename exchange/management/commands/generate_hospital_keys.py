"""``manage.py generate_hospital_keys --out FILE [--rotate]``: the hospital's JOSE key pairs
(exchange/keys.py, docs/operations/packages.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.keys import HospitalKeysUnavailable, new_key_pair, parse_jwks, write_jwks


class Command(BaseCommand):
    help = (
        "Write a new private JWKS (an ES384 signing key and an ECDH-ES+A256KW encryption key) to FILE with "
        "mode 0600, refusing to overwrite; with --rotate, put a new pair in front of FILE's keys and keep the "
        "old ones (they still verify and decrypt)."
    )
    # Run before the project's keys exist: that is when it is needed.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, type=Path, help="the JWKS file to write")
        parser.add_argument("--rotate", action="store_true", help="add a new pair to an existing FILE")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["out"])
        new = new_key_pair()
        if options["rotate"]:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as error:
                raise CommandError(f"--rotate needs an existing key file ({error.strerror}).") from None
            try:
                parse_jwks(text, source=str(path))
            except HospitalKeysUnavailable as error:
                raise CommandError(str(error)) from None
            old = json.loads(text)["keys"]
            write_jwks(path, [*new, *old], replace=True)
            self.stdout.write(
                f"Rotated: {new[0]['kid']} now signs and {new[1]['kid']} is published first for encryption; "
                f"{len(old)} older key(s) kept. Remove old keys once no package made with them can still arrive."
            )
            return
        try:
            write_jwks(path, new, replace=False)
        except FileExistsError:
            raise CommandError(f"{path} exists: refusing to overwrite it (use --rotate to add a new pair).") from None
        except OSError as error:
            raise CommandError(f"Cannot write {path} ({error.strerror}).") from None
        self.stdout.write(f"Wrote {path} (mode 0600): signing key {new[0]['kid']}, encryption key {new[1]['kid']}.")
        self.stdout.write("Point HOSPITAL_JWKS_FILE at it.")
