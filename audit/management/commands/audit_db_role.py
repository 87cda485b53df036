"""Print (or apply) the grants of the application's PostgreSQL role: INSERT/SELECT only on audit tables."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from audit.dbrole import event_partitions, grant_statements


class Command(BaseCommand):
    help = "Print the GRANT/REVOKE statements for the application's database role; --apply runs them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="The role the application connects as (not the owner).")
        parser.add_argument(
            "--sealer",
            metavar="ROLE",
            help="A separate role for seal_audit/verify_audit: only it may seal events and move chain heads.",
        )
        parser.add_argument("--apply", action="store_true", help="Run the statements now (as the owner).")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Database roles and grants apply to PostgreSQL only.")
        with connection.cursor() as cursor:
            partitions = event_partitions(cursor)
            if options["sealer"] is not None and options["sealer"] == options["role"]:
                raise CommandError("--sealer must name a role other than the application's.")
            grants = grant_statements(options["role"], partitions, sealer=options["sealer"])
            statements = [s.as_string(cursor.connection) for s in grants]
            if options["apply"]:
                for statement in statements:
                    cursor.execute(statement)
        for statement in statements:
            self.stdout.write(statement + ";")
