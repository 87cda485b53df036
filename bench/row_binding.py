"""Chart page cost with row-bound ciphertext (hc2) against the column binding it replaced (hc1), same run.

Two patients with identical charts (200 observations, 20 notes, a prescription) go through the full
read path (GET /patients/<id>/ as a physician on the care team: policy, audit, decryption, the real
template). The first one's values are row-bound ``hc2`` tokens read the way EncryptedField reads
them now: ``from_db_value`` wraps each token, the attribute descriptor decrypts it on first access
with the row's ``row_uid``. The second one's values are rewritten as the column-bound ``hc1`` tokens
of the old format and read the old way: ``from_db_value`` decrypts at once, a plain attribute holds
the plaintext. The two modes are switched in place and alternated, so machine drift hits both
alike. Target: row-bound within 5% of column-bound.

    .venv/bin/python -m bench.row_binding [--requests 40]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from django.apps import apps
from django.db import connection
from django.db.models.query_utils import DeferredAttribute
from django.test import Client
from django.test.utils import setup_test_environment
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import Role
from healthcrypt.crypto import field_keyring, row_identity
from healthcrypt.fields import EncryptedField
from records.services import (
    care_assignment_create,
    medication_prescribe,
    note_write,
    observation_record,
    patient_register,
)
from tests.conftest import sign_in
from tests.factories import column_bound_token


def build_chart(mrn: str, doctor: User, nurse: User, observations: int, notes: int) -> int:
    """One patient with the bench chart; returns its primary key."""
    patient = patient_register(
        actor=None,
        mrn=mrn,
        given_name="Pat",
        family_name="Ient",
        birth_date=datetime.date(1970, 5, 4),
        sex="female",
        allow_possible_duplicate=True,
    )
    start = timezone.now() - datetime.timedelta(days=1)
    for staff, role in ((doctor, "attending"), (nurse, "primary_nurse")):
        care_assignment_create(actor=None, staff=staff, patient=patient, team_role=role, starts_at=start)
    for i in range(observations):
        observation_record(
            actor=nurse,
            patient_id=patient.pk,
            category="vital-signs",
            display="Heart rate",
            value=str(60 + i % 50),
            unit="/min",
            loinc_code="8867-4",
            effective_at=start + datetime.timedelta(minutes=i),
        )
    for i in range(notes):
        note_write(
            actor=doctor, patient_id=patient.pk, kind="progress", text=f"Progress note {i}: stable, continue plan. " * 3
        )
    medication_prescribe(actor=doctor, patient_id=patient.pk, display="Aspirin 75 mg", dosage="daily")
    return int(patient.pk)


def rewrite_as_column_bound(patient_id: int) -> int:
    """Rewrite every value of one patient's rows as the hc1 token the old format wrote; return how many."""
    keyring = field_keyring()
    qn = connection.ops.quote_name
    count = 0
    for model in apps.get_models(include_auto_created=False):
        fields = [f for f in model._meta.local_concrete_fields if isinstance(f, EncryptedField)]
        if not fields or model._meta.app_label != "records":
            continue
        owner = "id" if model._meta.label == "records.Patient" else "patient_id"
        if owner != "id" and not any(f.column == "patient_id" for f in model._meta.concrete_fields):
            continue
        columns = ", ".join(qn(f.column) for f in fields)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, row_uid, {columns} FROM {qn(model._meta.db_table)} WHERE {owner} = %s",  # noqa: S608
                [patient_id],
            )
            for pk, row_uid, *tokens in cursor.fetchall():
                for field, token in zip(fields, tokens, strict=True):
                    if token is None:
                        continue
                    plaintext = keyring.decrypt(token, context=field.context, row=row_identity(row_uid))
                    legacy = column_bound_token(plaintext.decode(), context=field.context)
                    cursor.execute(
                        f"UPDATE {qn(model._meta.db_table)} SET {qn(field.column)} = %s WHERE id = %s",  # noqa: S608
                        [legacy, pk],
                    )
                    count += 1
    return count


def _column_bound_from_db_value(self: EncryptedField, value: Any, expression: Any, connection: Any) -> Any:
    # The old read path: decrypt at once, bound to the column only. The clinical record only: the
    # signed-in user's TOTP device (accounts) stays row-bound and is read the current way.
    if self.model._meta.app_label != "records":
        return _ROW_BOUND_READ(self, value, expression, connection)
    if value is None:
        return None
    plaintext = field_keyring().decrypt(value, context=self.context, row=None, accept_column_bound=True)
    return self.base_field.to_python(plaintext.decode("utf-8"))


_ROW_BOUND_READ = EncryptedField.from_db_value


@contextmanager
def column_bound_reads() -> Iterator[None]:
    """Read the way EncryptedField did before row binding: eager decryption, plain attributes."""
    fields = [
        (model, f)
        for model in apps.get_models()
        for f in model._meta.concrete_fields
        if isinstance(f, EncryptedField) and f.model is model and model._meta.app_label == "records"
    ]
    descriptors = {(model, f.attname): model.__dict__[f.attname] for model, f in fields}
    EncryptedField.from_db_value = _column_bound_from_db_value  # type: ignore[method-assign]
    for model, f in fields:
        setattr(model, f.attname, DeferredAttribute(f))
    try:
        yield
    finally:
        EncryptedField.from_db_value = _ROW_BOUND_READ  # type: ignore[method-assign]
        for (model, attname), descriptor in descriptors.items():
            setattr(model, attname, descriptor)


def median_ms(client: Client, url: str, requests: int) -> float:
    for _ in range(3):
        assert client.get(url).status_code == 200
    timings = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(url)
        timings.append(time.perf_counter() - start)
        assert response.status_code == 200
    return statistics.median(timings) * 1000


def run(args: argparse.Namespace) -> None:
    ward = Department.objects.create(code="bench-ward", name="Bench ward", kind=Department.Kind.WARD)
    doctor = User.objects.create_user(
        "bench_doc", password="x" * 20, role=Role.PHYSICIAN, department=ward, first_name="Ben", last_name="Ch"
    )
    nurse = User.objects.create_user("bench_nurse", password="x" * 20, role=Role.NURSE, department=ward)
    row_bound = build_chart("B-1", doctor, nurse, 200, 20)
    column_bound = build_chart("B-2", doctor, nurse, 200, 20)
    values = rewrite_as_column_bound(column_bound)
    client = sign_in(Client(), doctor)
    rows, columns = [], []
    for _ in range(4):
        rows.append(median_ms(client, f"/patients/{row_bound}/", args.requests // 4))
        with column_bound_reads():
            columns.append(median_ms(client, f"/patients/{column_bound}/", args.requests // 4))
    row_ms, column_ms = statistics.median(rows), statistics.median(columns)
    print(
        f"chart page, 200 observations + 20 notes ({connection.vendor}), median of {args.requests} requests each "
        f"({values} values per chart)"
    )
    print(f"column-bound hc1, eager decryption: {column_ms:7.2f} ms  (baseline)")
    print(f"row-bound hc2, decrypt on access:   {row_ms:7.2f} ms  ratio {row_ms / column_ms:5.3f}x  (target <= 1.05x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    setup_test_environment()
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, serialize=False)
    try:
        run(args)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)


if __name__ == "__main__":
    main()
