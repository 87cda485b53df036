"""Encrypted model fields for the clinical record; the implementation is shared with accounts."""

from __future__ import annotations

from healthcrypt.fields import EncryptedField, encrypt

__all__ = ["EncryptedField", "encrypt"]
