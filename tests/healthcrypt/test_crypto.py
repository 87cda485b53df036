from __future__ import annotations

from base64 import urlsafe_b64decode, urlsafe_b64encode

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from healthcrypt.crypto import DecryptionError, Keyring, blind_index, generate_key, normalise, token_header


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.parse(f"new:{generate_key()},old:{generate_key()}")


def test_round_trip_and_fresh_nonce_each_time(keyring: Keyring) -> None:
    a = keyring.encrypt(b"Jane Doe", context="records.Patient.family_name")
    b = keyring.encrypt(b"Jane Doe", context="records.Patient.family_name")
    assert a != b  # equal plaintexts do not give equal ciphertexts
    assert "Jane" not in a
    assert keyring.decrypt(a, context="records.Patient.family_name") == b"Jane Doe"


def test_first_key_encrypts_and_its_id_is_in_the_token(keyring: Keyring) -> None:
    token = keyring.encrypt(b"x", context="c")
    assert token_header(token) == ("hc1", "new")
    assert keyring.current_kid == "new"
    assert keyring.kids == ("new", "old")


def test_every_key_in_the_ring_decrypts_so_rotation_keeps_old_data_readable() -> None:
    old_key = generate_key()
    before = Keyring.parse(f"old:{old_key}")
    token = before.encrypt(b"value", context="c")
    after = Keyring.parse(f"new:{generate_key()},old:{old_key}")
    assert after.decrypt(token, context="c") == b"value"
    assert token_header(after.encrypt(b"value", context="c"))[1] == "new"


def test_missing_key_fails_loudly_without_revealing_the_value(keyring: Keyring) -> None:
    token = keyring.encrypt(b"secret diagnosis", context="c")
    other = Keyring.parse(f"other:{generate_key()}")
    with pytest.raises(DecryptionError, match="No key with id 'new'") as excinfo:
        other.decrypt(token, context="c")
    assert "secret" not in str(excinfo.value)
    assert token not in str(excinfo.value)


def test_wrong_key_with_the_same_id_fails_authentication(keyring: Keyring) -> None:
    token = keyring.encrypt(b"x", context="c")
    impostor = Keyring.parse(f"new:{generate_key()}")
    with pytest.raises(DecryptionError, match="failed authentication"):
        impostor.decrypt(token, context="c")


def test_ciphertext_is_bound_to_its_context(keyring: Keyring) -> None:
    token = keyring.encrypt(b"x", context="records.Patient.given_name")
    with pytest.raises(DecryptionError):
        keyring.decrypt(token, context="records.Patient.family_name")


def test_tampered_or_foreign_tokens_fail(keyring: Keyring) -> None:
    token = keyring.encrypt(b"abc", context="c")
    prefix, body = token.rsplit(":", 1)
    raw = bytearray(urlsafe_b64decode(body))
    raw[-1] ^= 0x01  # one bit of the authentication tag
    flipped = f"{prefix}:{urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(DecryptionError):
        keyring.decrypt(flipped, context="c")
    with pytest.raises(DecryptionError, match="not a Healthcrypt ciphertext"):
        keyring.decrypt("plain text", context="c")
    with pytest.raises(DecryptionError, match="Unsupported ciphertext version"):
        keyring.decrypt("hc0:new:AAAA", context="c")


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
