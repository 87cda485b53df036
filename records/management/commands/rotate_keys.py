"""Re-encrypt every encrypted value and attachment file that is not row-bound under the current field key.

    python manage.py rotate_keys [--batch-size 500] [--dry-run] [--report-only] [--no-progress]
                                 [--database default]

Run it after prepending a new key to ``FIELD_ENCRYPTION_KEYS`` and restarting every worker, and to
move column-bound ``hc1`` values (and version 1 files) to the row-bound format
(docs/operations/keys.md, docs/decisions/0007-row-bound-ciphertext.md). A value is stale when it is
not row-bound (``hc2``) or not under the current key. It covers every model of every installed app that has encrypted fields
(found through ``apps.get_models()``, so new models need no change here) and the attachment files.

How it stays safe while the application keeps serving:

- Values are read as raw tokens with SQL, never through the ORM, whose ``from_db_value`` would
  decrypt every value, including the ones already current. Only rows with at least one value that
  does not start with ``hc2:<current kid>:`` are selected (a prefix test in SQL), in primary-key order,
  one batch at a time, so memory is flat and a finished rotation costs one scan per table.
- A stale value is decrypted (an ``hc1`` one with its old column-only binding: this command always
  reads them, whatever FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND says) and encrypted again for the same
  column context (``app_label.Model.field``) and the row's ``row_uid``, as EncryptedField does: the
  plaintext never changes.
- Each batch is written in its own transaction with compare-and-swap updates
  (``UPDATE ... WHERE pk = %s AND row_uid = <read> AND column = <the token we read>``). A row the application changed in
  the meantime is left as the application wrote it, so no concurrent write is ever overwritten with
  stale data, and no lock is held while decrypting. When that happened, the table is walked once
  more to pick up anything a worker still on the old keyring wrote under an old key.
- It is resumable without a checkpoint: what is done is visible in the data itself (the key id in
  each token, ``Attachment.key_id``), so an interrupted run simply continues when run again, and a
  run after completion changes nothing.
- A file is copied under the current key into a new storage name and verified
  (records/files/ ``reencrypt_file``), the row is pointed at the copy (compare-and-swap on the old
  storage name), and the old file is deleted only once that is committed. A crash at any step
  leaves a readable file behind.

A value or file that cannot be decrypted is reported (model, primary key, field; never a value)
and skipped, and the command exits with status 1 at the end. The closing report gives, for each key
id, how many values and files still use it and how many of them are still column-bound, so an
operator knows when an old key can be retired and when FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND can go.

This file reads the options and runs the passes; the work is in records/rotation/ (``plan``,
``values``, ``attachments``, ``report``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from healthcrypt.crypto import field_keyring
from records.rotation import (
    DEFAULT_BATCH_SIZE,
    FileRotation,
    KeyReport,
    Progress,
    Totals,
    ValueRotation,
    encrypted_tables,
)


class Command(ValueRotation, FileRotation, KeyReport, BaseCommand):
    help = (
        "Re-encrypt every encrypted value and attachment file that is not under the current field key "
        "(the first of FIELD_ENCRYPTION_KEYS), then report how many each key id still protects."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows read and written per transaction (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count (and check that they decrypt) the values and files to re-encrypt; write nothing.",
        )
        parser.add_argument(
            "--report-only", action="store_true", help="Only print how many values and files each key id protects."
        )
        parser.add_argument("--no-progress", action="store_true", help="Do not show the progress line on stderr.")
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="The database to rotate (default: %(default)s)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        # The state the parts of the run share (records/rotation/plan.py, RotationState).
        self.alias = options["database"]
        self.connection = connections[self.alias]
        self.keyring = field_keyring()
        self.current = self.keyring.current_kid
        self.dry_run = options["dry_run"]
        self.batch_size = batch_size
        tables = encrypted_tables()
        totals = Totals()

        if not options["report_only"]:
            show = not options["no_progress"] and self.stderr.isatty()
            self.progress = Progress(self.stderr, enabled=show)
            if show:
                self.progress.total = sum(self._count_stale_rows(t) for t in tables) + self._stale_files().count()
            try:
                for table in tables:
                    self._rotate_table(table, totals)
                self._rotate_files(totals)
            except KeyboardInterrupt:
                self.progress.close()
                raise CommandError(
                    f"Interrupted after re-encrypting {totals.values} values and {totals.files} files; all of "
                    "them are saved. Run the command again to continue.",
                    returncode=130,
                ) from None
            self.progress.close()
            self._print_summary(totals)

        self._print_report(tables, verbose=options["verbosity"] >= 2)

        if totals.problems:
            raise CommandError(
                f"{totals.problems} value(s) or file(s) could not be re-encrypted (listed above); "
                "they still use their old key."
            )


__all__ = ["Command", "encrypted_tables"]
