from __future__ import annotations

import secrets
import uuid
from base64 import urlsafe_b64decode, urlsafe_b64encode

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from healthcrypt.crypto import (
    ColumnBoundRefused,
    DecryptionError,
    Keyring,
    blind_index,
    decode_key,
    generate_key,
    normalise,
    row_identity,
    token_header,
)

ROW = "6f1c1d9e-8c55-4c55-9d6a-0b7f2d7c1a10"
OTHER_ROW = "0a7e6b55-43c2-4a4e-8f0e-5b0c9d1e2f30"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.parse(f"new:{generate_key()},old:{generate_key()}")


def test_round_trip_and_fresh_nonce_each_time(keyring: Keyring) -> None:
    a = keyring.encrypt(b"Jane Doe", context="records.Patient.family_name", row=ROW)
    b = keyring.encrypt(b"Jane Doe", context="records.Patient.family_name", row=ROW)
    assert a != b  # equal plaintexts do not give equal ciphertexts
    assert "Jane" not in a
    assert keyring.decrypt(a, context="records.Patient.family_name", row=ROW) == b"Jane Doe"


def test_first_key_encrypts_and_its_id_is_in_the_token(keyring: Keyring) -> None:
    token = keyring.encrypt(b"x", context="c", row=ROW)
    assert token_header(token) == ("hc2", "new")
    assert keyring.current_kid == "new"
    assert keyring.kids == ("new", "old")


def test_every_key_in_the_ring_decrypts_so_rotation_keeps_old_data_readable() -> None:
    old_key = generate_key()
    before = Keyring.parse(f"old:{old_key}")
    token = before.encrypt(b"value", context="c", row=ROW)
    after = Keyring.parse(f"new:{generate_key()},old:{old_key}")
    assert after.decrypt(token, context="c", row=ROW) == b"value"
    assert token_header(after.encrypt(b"value", context="c", row=ROW))[1] == "new"


def test_missing_key_fails_loudly_without_revealing_the_value(keyring: Keyring) -> None:
    token = keyring.encrypt(b"secret diagnosis", context="c", row=ROW)
    other = Keyring.parse(f"other:{generate_key()}")
    with pytest.raises(DecryptionError, match="No key with id 'new'") as excinfo:
        other.decrypt(token, context="c", row=ROW)
    assert "secret" not in str(excinfo.value)
    assert token not in str(excinfo.value)


def test_wrong_key_with_the_same_id_fails_authentication(keyring: Keyring) -> None:
    token = keyring.encrypt(b"x", context="c", row=ROW)
    impostor = Keyring.parse(f"new:{generate_key()}")
    with pytest.raises(DecryptionError, match="failed authentication"):
        impostor.decrypt(token, context="c", row=ROW)


def test_ciphertext_is_bound_to_its_context(keyring: Keyring) -> None:
    token = keyring.encrypt(b"x", context="records.Patient.given_name", row=ROW)
    with pytest.raises(DecryptionError):
        keyring.decrypt(token, context="records.Patient.family_name", row=ROW)


def test_tampered_or_foreign_tokens_fail(keyring: Keyring) -> None:
    token = keyring.encrypt(b"abc", context="c", row=ROW)
    prefix, body = token.rsplit(":", 1)
    raw = bytearray(urlsafe_b64decode(body))
    raw[-1] ^= 0x01  # one bit of the authentication tag
    flipped = f"{prefix}:{urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(DecryptionError):
        keyring.decrypt(flipped, context="c", row=ROW)
    with pytest.raises(DecryptionError, match="not a Healthcrypt ciphertext"):
        keyring.decrypt("plain text", context="c", row=ROW)
    with pytest.raises(DecryptionError, match="Unsupported ciphertext version"):
        keyring.decrypt("hc0:new:AAAA", context="c", row=ROW)


def test_ciphertext_is_bound_to_its_row(keyring: Keyring) -> None:
    token = keyring.encrypt(b"Once daily", context="records.Medication.dosage", row=ROW)
    with pytest.raises(DecryptionError, match="failed authentication"):
        keyring.decrypt(token, context="records.Medication.dosage", row=OTHER_ROW)
    with pytest.raises(DecryptionError, match="row identity is unknown"):
        keyring.decrypt(token, context="records.Medication.dosage", row=None)


def column_bound_token(key: str, kid: str, plaintext: bytes, context: str) -> str:
    """An hc1 token exactly as the column-bound format wrote it (AAD ``hc1:<kid>:<context>``)."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(decode_key(key, name="test")).encrypt(nonce, plaintext, f"hc1:{kid}:{context}".encode())
    return f"hc1:{kid}:{urlsafe_b64encode(nonce + sealed).decode()}"


def test_column_bound_tokens_open_only_when_accepted() -> None:
    key = generate_key()
    keyring = Keyring.parse(f"old:{key}")
    legacy = column_bound_token(key, "old", b"Once daily", "records.Medication.dosage")
    with pytest.raises(ColumnBoundRefused, match="column-bound") as excinfo:
        keyring.decrypt(legacy, context="records.Medication.dosage", row=ROW)
    assert legacy not in str(excinfo.value)
    assert keyring.decrypt(legacy, context="records.Medication.dosage", row=ROW, accept_column_bound=True) == (
        b"Once daily"
    )
    # Still bound to its column.
    with pytest.raises(DecryptionError, match="failed authentication"):
        keyring.decrypt(legacy, context="records.Medication.display", row=ROW, accept_column_bound=True)


def test_row_identity_is_the_same_text_for_every_spelling_of_a_uuid() -> None:
    value = uuid.UUID(ROW)
    assert row_identity(value) == row_identity(value.hex) == row_identity(ROW) == ROW
    with pytest.raises(DecryptionError, match="not a UUID"):
        row_identity("not-a-uuid")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "holds no key"),
        ("nokid", "must look like 'kid:base64key'"),
        ("bad kid:" + "A" * 43, "must look like"),
        ("k1:c2hvcnQ", "must decode to 32 bytes, not 5"),
        ("k1:***", "not valid base64url"),
    ],
)
def test_malformed_keyrings_are_refused_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        Keyring.parse(spec)


def test_normalise_ignores_case_width_and_spacing() -> None:
    assert normalise("  O'Brien   SMITH ") == normalise("o'brien smith")
    assert normalise("\uff2d\uff32\uff2e\uff11\uff12") == "mrn12"  # full-width "MRN12"


def test_blind_index_is_case_and_space_insensitive_and_separated_by_purpose() -> None:
    assert blind_index("HC 100001", purpose="mrn") == blind_index("hc 100001 ", purpose="mrn")
    assert blind_index("HC100001", purpose="mrn") != blind_index("HC100001", purpose="name")
    assert len(blind_index("x", purpose="mrn")) == 64


def test_blind_index_depends_on_its_own_key() -> None:
    before = blind_index("HC1", purpose="mrn")
    with override_settings(BLIND_INDEX_KEY=generate_key()):
        assert blind_index("HC1", purpose="mrn") != before
    assert blind_index("HC1", purpose="mrn") == before
