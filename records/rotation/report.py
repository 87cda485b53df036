"""What rotate_keys prints: the summary of a run, and how many values and files each key id protects."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.db.models import Count

from healthcrypt.crypto import COLUMN_BOUND_VERSION, ROW_BOUND_VERSION, DecryptionError
from records.files import FORMAT_VERSION, attachments_dir, file_key_id
from records.models import Attachment
from records.rotation.plan import NOT_A_CIPHERTEXT, EncryptedColumn, EncryptedTable, RotationState, Totals, _token_kind


class KeyReport(RotationState):
    """The closing report: counted in SQL from token prefixes and file headers, never by decrypting."""

    def _unreferenced_files(self) -> Counter[str]:
        """Files in the attachments directory that no row refers to, by key id (a batch at a time).

        They are left by an upload or a rotation that was killed between writing a file and
        committing its row (or between committing and deleting the old file); a fresh upload is one
        for a moment too. None is deleted here: see docs/operations/keys.md.
        """
        found: Counter[str] = Counter()
        directory = attachments_dir()
        if not directory.is_dir():
            return found

        def check(names: list[str]) -> None:
            known = set(
                Attachment.objects.using(self.alias)
                .filter(storage_name__in=names)
                .values_list("storage_name", flat=True)
            )
            for name in names:
                if name not in known:
                    try:
                        found[file_key_id(name)] += 1
                    except (DecryptionError, OSError, ValueError):
                        found[NOT_A_CIPHERTEXT] += 1

        names: list[str] = []
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file():
                    names.append(entry.name)
                if len(names) >= self.batch_size:
                    check(names)
                    names = []
        if names:
            check(names)
        return found

    def _print_summary(self, totals: Totals) -> None:
        verb = "Would re-encrypt" if self.dry_run else "Re-encrypted"
        self.stdout.write(
            f"{verb} {totals.values} values in {totals.rows} rows and {totals.files} files "
            f"under key '{self.current}'." + (" Dry run: nothing was written." if self.dry_run else "")
        )
        if totals.conflicts:
            self.stdout.write(
                f"{totals.conflicts} value(s) or file(s) changed while this ran and were left as the application "
                "wrote them; the report below shows whether any still use an old key."
            )
        if totals.problems:
            self.stderr.write(f"{totals.problems} value(s) or file(s) could not be decrypted:")
            for problem in totals.listed:
                self.stderr.write(f"  {problem}")
            if totals.problems > len(totals.listed):
                self.stderr.write(f"  ... and {totals.problems - len(totals.listed)} more.")

    def _print_report(self, tables: Sequence[EncryptedTable], *, verbose: bool) -> None:
        per_model: dict[str, Counter[str]] = {}
        values: Counter[str] = Counter()
        column_bound: Counter[str] = Counter()
        for table in tables:
            usage, unbound = self._key_usage(table)
            per_model[table.label] = usage
            values.update(usage)
            column_bound.update(unbound)
        unbound_files = Attachment.objects.using(self.alias).exclude(file_format=FORMAT_VERSION).values("pk").count()
        files: Counter[str] = Counter(
            dict(
                Attachment.objects.using(self.alias)
                .values_list("key_id")
                .annotate(n=Count("pk"))
                .order_by()
                .values_list("key_id", "n")
            )
        )
        ring = self.keyring.kids
        kids = [*ring, *sorted((set(values) | set(files)) - set(ring))]
        width = max(len("key id"), *(len(k) for k in kids))
        self.stdout.write(f"Key usage (current key: '{self.current}'):")
        self.stdout.write(f"  {'key id':<{width}}  {'values':>10}  {'col-bound':>10}  {'files':>8}  status")
        for kid in kids:
            if kid == self.current:
                status = "current" + (": column-bound values left, run rotate_keys" if column_bound[kid] else "")
            elif kid not in ring:
                status = "NOT IN THE KEYRING: cannot be decrypted"
            elif values[kid] or files[kid]:
                status = "still in use: run rotate_keys"
            else:
                status = "unused: can be retired once no backup needs it"
            self.stdout.write(
                f"  {kid:<{width}}  {values[kid]:>10}  {column_bound[kid]:>10}  {files[kid]:>8}  {status}"
            )
        left = sum(column_bound.values())
        # The operator turns FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND off once both reach 0.
        self.stdout.write(
            f"Column-bound values left: {left}; files not bound to their row: {unbound_files}"
            + (
                "."
                if not (left or unbound_files)
                else " (readable only while FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND is on)."
            )
        )
        unreferenced = self._unreferenced_files()
        if unreferenced:
            counts = ", ".join(f"{kid}: {n}" for kid, n in sorted(unreferenced.items()))
            self.stdout.write(
                f"Files on disk that no attachment refers to: {sum(unreferenced.values())} ({counts}); "
                "left by interrupted uploads or rotations, see docs/operations/keys.md."
            )
        else:
            self.stdout.write("Files on disk that no attachment refers to: 0.")
        if verbose:
            self.stdout.write("Values per model and key id:")
            for label, usage in per_model.items():
                counts = ", ".join(f"{kid}: {n}" for kid, n in sorted(usage.items())) or "no values"
                self.stdout.write(f"  {label}: {counts}")

    def _key_usage(self, table: EncryptedTable) -> tuple[Counter[str], Counter[str]]:
        """How many values of the table each key id protects, and how many of those are column-bound.

        Counted in SQL from the token prefixes, without decrypting.
        """
        qn = self.connection.ops.quote_name
        # Per key id: the row-bound prefix, then the column-bound one.
        prefixes = [
            f"{version}:{kid}:" for kid in self.keyring.kids for version in (ROW_BOUND_VERSION, COLUMN_BOUND_VERSION)
        ]
        selects: list[str] = []
        params: list[str] = []
        for column in table.columns:
            col = qn(column.column)
            selects.append(f"COUNT({col})")
            for prefix in prefixes:
                selects.append(f"SUM(CASE WHEN SUBSTR({col}, 1, {len(prefix)}) = %s THEN 1 ELSE 0 END)")
                params.append(prefix)
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(selects)} FROM {qn(table.table)}", params)  # noqa: S608
            row = [int(n or 0) for n in cursor.fetchone()]
        usage: Counter[str] = Counter()
        column_bound: Counter[str] = Counter()
        stride = 1 + len(prefixes)
        for index, column in enumerate(table.columns):
            present, *per_prefix = row[index * stride : (index + 1) * stride]
            for position, kid in enumerate(self.keyring.kids):
                bound, unbound = per_prefix[2 * position], per_prefix[2 * position + 1]
                if bound + unbound:
                    usage[kid] += bound + unbound
                if unbound:
                    column_bound[kid] += unbound
            if present > sum(per_prefix):
                # Values under keys no longer in the ring: rare, so read just those to name their key.
                foreign, foreign_unbound = self._foreign_kids(table, column, prefixes)
                usage.update(foreign)
                column_bound.update(foreign_unbound)
        return usage, column_bound

    def _foreign_kids(
        self, table: EncryptedTable, column: EncryptedColumn, prefixes: list[str]
    ) -> tuple[Counter[str], Counter[str]]:
        qn = self.connection.ops.quote_name
        col, pk = qn(column.column), qn(table.pk_column)
        outside = " AND ".join(f"SUBSTR({col}, 1, {len(p)}) <> %s" for p in prefixes)
        base = f"SELECT {pk}, {col} FROM {qn(table.table)} WHERE {col} IS NOT NULL AND {outside}"  # noqa: S608
        found: Counter[str] = Counter()
        unbound: Counter[str] = Counter()
        last_pk: Any = None
        while True:
            sql, args = (base, prefixes) if last_pk is None else (f"{base} AND {pk} > %s", [*prefixes, last_pk])
            with self.connection.cursor() as cursor:
                cursor.execute(f"{sql} ORDER BY {pk} LIMIT {self.batch_size}", args)
                rows = cursor.fetchall()
            if not rows:
                return found, unbound
            for _, token in rows:
                kid, column_bound = _token_kind(token)
                found[kid] += 1
                if column_bound:
                    unbound[kid] += 1
            last_pk = rows[-1][0]
