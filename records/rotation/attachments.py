"""Re-encrypting attachment files: a verified copy under the current key, the row moved to it, and the
old file deleted once that is committed."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from healthcrypt.crypto import DecryptionError, row_identity
from healthcrypt.fields import ROW_UID
from records.db import mark_actor
from records.files import FORMAT_VERSION, delete_stored, file_header, reencrypt_file
from records.models import Attachment
from records.rotation.plan import Problem, RotationState, Totals, _file_error, concrete_column


class FileRotation(RotationState):
    """The file pass of rotate_keys: every attachment file not row-bound under the current key."""

    def _stale_files(self) -> Any:
        # Stale: under another key, or in the format bound to the storage name only.
        return Attachment.objects.using(self.alias).exclude(key_id=self.current, file_format=FORMAT_VERSION)

    def _recorded_sha256(self, pk: Any) -> str | None:
        """The SHA-256 recorded on the row, or None if that value cannot be decrypted (reported apart)."""
        column = Attachment._meta.get_field("sha256")
        context = f"{Attachment._meta.label}.{column.name}"
        qn = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {qn(column.column)}, {qn(concrete_column(Attachment, ROW_UID))} "  # noqa: S608
                f"FROM {qn(Attachment._meta.db_table)} WHERE {qn(Attachment._meta.pk.column)} = %s",
                [pk],
            )
            row = cursor.fetchone()
        if row is None or row[0] is None or row[1] is None:
            return None
        try:
            plaintext = self.keyring.decrypt(
                row[0], context=context, row=row_identity(row[1]), accept_column_bound=True
            )
            return plaintext.decode("ascii")
        except (DecryptionError, UnicodeDecodeError):
            return None

    def _rotate_files(self, totals: Totals) -> None:
        last_pk: Any = None
        while True:
            # Plain columns only: listing files must not decrypt anything.
            batch = self._stale_files().order_by("pk")
            if last_pk is not None:
                batch = batch.filter(pk__gt=last_pk)
            rows = list(batch.values_list("pk", "storage_name", ROW_UID)[: self.batch_size])
            if not rows:
                return
            for pk, storage_name, row_uid in rows:
                last_pk = pk
                done = self._rotate_file(pk, storage_name, row_uid, totals)
                self.progress.advance("records.Attachment files", rows=1, values=0)
                totals.files += done

    def _rotate_file(self, pk: Any, storage_name: str, row_uid: Any, totals: Totals) -> int:
        label = Attachment._meta.label
        if self.dry_run:
            # Reading the header alone tells whether the file is there and its key is in the ring.
            try:
                kid, _version = file_header(storage_name)
            except (DecryptionError, OSError, ValueError) as exc:
                totals.problem(Problem(label, pk, "file", _file_error(storage_name, exc)))
                return 0
            if kid not in self.keyring.kids:
                totals.problem(Problem(label, pk, "file", f"stored file {storage_name} is under unknown key '{kid}'"))
                return 0
            return 1
        try:
            # Written for the row's row_uid: a version 1 file becomes bound to its row here.
            new = reencrypt_file(storage_name, row_uid=row_uid, expected_sha256=self._recorded_sha256(pk))
        except (DecryptionError, OSError, ValueError) as exc:
            totals.problem(Problem(label, pk, "file", _file_error(storage_name, exc)))
            return 0
        try:
            with transaction.atomic(using=self.alias):
                mark_actor(None, job="rotate_keys")
                moved = (
                    Attachment.objects.using(self.alias)
                    .filter(pk=pk, storage_name=storage_name, row_uid=row_uid)
                    .update(storage_name=new.storage_name, key_id=new.key_id, file_format=FORMAT_VERSION)
                )
        except BaseException:
            delete_stored(new.storage_name)
            raise
        if not moved:
            # Deleted or replaced meanwhile: the copy is not needed, and the old file is not ours.
            delete_stored(new.storage_name)
            totals.conflicts += 1
            return 0
        # Only once the row points at the copy for good: before that, the old file is the data.
        transaction.on_commit(lambda: self._delete_old_file(pk, storage_name, totals), using=self.alias)
        return 1

    def _delete_old_file(self, pk: Any, storage_name: str, totals: Totals) -> None:
        try:
            delete_stored(storage_name)
        except OSError as exc:
            # The row already points at the new file; the old one is only clutter under an old key.
            totals.problem(
                Problem(Attachment._meta.label, pk, "file", f"old file {storage_name} not deleted ({exc.strerror})")
            )
