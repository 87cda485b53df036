"""``python manage.py audit_partitions [--ahead 3]``: the coming months' partitions of the audit event tables.

Run monthly by the database owner (a systemd timer, docs/operations/database-roles.md). On PostgreSQL,
for ``audit_accessevent``, ``audit_changeevent`` and ``audit_autheventrecord`` (audit/partitions.py) it
creates the partitions of this month and ``--ahead`` more, and moves rows that landed in the DEFAULT
partition (a missed run, a clock far off) into their month's partition. Its transaction is marked as the
application's (``system:audit_partitions``), so the DDL it makes seals as the application's instead of
alerting. Idempotent. On SQLite the tables are plain and there is nothing to do.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from audit import partitions
from records.db import mark_actor


class Command(BaseCommand):
    help = "Create the coming months' partitions of the audit event tables; move rows out of the DEFAULT partition."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--ahead",
            type=int,
            default=partitions.AHEAD,
            choices=range(1, 25),
            metavar="MONTHS",
            help=f"Months after this one to create (default {partitions.AHEAD}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            self.stdout.write("The audit tables are not partitioned on this database (SQLite); nothing to do.")
            return
        today = timezone.now().date()
        with transaction.atomic(), connection.cursor() as cursor:
            mark_actor(None, job="audit_partitions")
            for table in partitions.PARTITIONED_TABLES:
                if not partitions.is_partitioned(cursor, table):
                    self.stderr.write(f"{table} is not partitioned yet: run `manage.py migrate` first.")
                    continue
                done = partitions.maintain(cursor, table, today=today, ahead=options["ahead"])
                created = ", ".join(done.created) or "none"
                self.stdout.write(
                    f"{table}: created {created}; moved {done.moved} row(s) out of the DEFAULT partition."
                )
