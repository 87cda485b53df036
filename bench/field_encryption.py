"""Cost of the field-encryption layer against raw AES-GCM on the same values (same run, ratio).

.venv/bin/python -m bench.field_encryption [--values 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import secrets
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.interleave import interleave, line
from healthcrypt.crypto import field_keyring
from records.models import Patient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--values", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (baseline and subjects alternate)")
    args = parser.parse_args()

    values = [f"Surname-{i:06d}".encode() for i in range(args.values)]
    key = AESGCM.generate_key(bit_length=256)
    raw = AESGCM(key)
    keyring = field_keyring()
    field = Patient._meta.get_field("family_name")

    def baseline() -> None:
        for value in values:
            nonce = secrets.token_bytes(12)
            raw.decrypt(nonce, raw.encrypt(nonce, value, b"ctx"), b"ctx")

    context = "records.Patient.family_name"
    row = str(uuid.uuid4())

    def keyring_round_trip() -> None:
        for value in values:
            keyring.decrypt(keyring.encrypt(value, context=context, row=row), context=context, row=row)

    texts = [v.decode() for v in values]

    def field_round_trip() -> None:
        # Through the field the way a model instance uses it: pre_save encrypts for the instance's
        # row, from_db_value seals, opening it (what the attribute descriptor does) decrypts.
        instance = Patient()
        row_text = str(instance.row_uid)
        for text in texts:
            instance.family_name = text
            token = field.get_prep_value(field.pre_save(instance, add=True))
            field.from_db_value(token, None, None)._open(row_text, None)  # type: ignore[arg-type]

    timings = interleave(
        {"baseline": baseline, "keyring": keyring_round_trip, "field": field_round_trip}, rounds=args.rounds
    )
    per = 1e6 / args.values
    base = timings["baseline"]
    print(
        f"values: {args.values}, {args.rounds} interleaved rounds (min / median / max, ratio = median of per-round ratios)"
    )
    print(line("raw AES-GCM encrypt+decrypt", base, per=per, unit="us/value"))
    print(line("Keyring encrypt+decrypt", timings["keyring"], per=per, unit="us/value", baseline=base))
    print(line("EncryptedField pre_save+open", timings["field"], per=per, unit="us/value", baseline=base))


if __name__ == "__main__":
    main()
