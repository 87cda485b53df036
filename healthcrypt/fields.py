"""Encrypted model fields: ``encrypt(models.CharField(max_length=100))``.

The wrapped field decides how a value is validated, converted and shown in forms; this field
stores it as an AES-GCM token (healthcrypt/crypto.py) in a text column. The database never sees
plaintext, and a value that cannot be decrypted raises DecryptionError: it is never handed back as
if the ciphertext were the data. Encrypted columns cannot be filtered on (exact lookups use a blind
index column instead); only ``isnull`` is allowed, so a mistaken ``filter(name=...)`` fails loudly
instead of silently matching nothing.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression

from healthcrypt.crypto import field_keyring

SUPPORTED_BASE_FIELDS: tuple[type[models.Field], ...] = (
    models.CharField,  # includes EmailField, SlugField
    models.TextField,
    models.DateField,  # includes DateTimeField
    models.IntegerField,
    models.DecimalField,
    models.FloatField,
    models.BooleanField,
)


class EncryptedField(models.TextField):
    """A column holding the encrypted form of ``base_field``'s value."""

    description = "Encrypted %(base_description)s"
    empty_strings_allowed = True

    def __init__(self, base_field: models.Field, **kwargs: Any) -> None:
        if not isinstance(base_field, SUPPORTED_BASE_FIELDS):
            raise TypeError(f"encrypt() does not support {type(base_field).__name__}.")
        if base_field.primary_key or base_field.unique or base_field.db_index:
            raise TypeError("An encrypted field cannot be a key, unique or indexed; use a blind index.")
        self.base_field = base_field
        super().__init__(**kwargs)

    @property
    def _context(self) -> str:
        # Binds each ciphertext to its column: a token moved to another column does not decrypt.
        return f"{self.model._meta.label}.{self.name}"

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        self.base_field.set_attributes_from_name(name)
        self.base_field.model = cls

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [*super().check(**kwargs), *self.base_field.check(**kwargs)]

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        kwargs["base_field"] = self.base_field.clone()
        return name, "healthcrypt.fields.EncryptedField", args, kwargs

    def get_internal_type(self) -> str:
        return "TextField"

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        return None

    def get_transform(self, lookup_name: str) -> Any:
        return None

    # --- Python <-> database ------------------------------------------------------------------

    def to_python(self, value: Any) -> Any:
        return self.base_field.to_python(value)

    def get_prep_value(self, value: Any) -> Any:
        if value is None or isinstance(value, Expression):
            return value
        prepared = self.base_field.get_prep_value(self.base_field.to_python(value))
        if prepared is None:
            return None
        return field_keyring().encrypt(str(prepared).encode("utf-8"), context=self._context)

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        if value is None:
            return None
        plaintext = field_keyring().decrypt(value, context=self._context).decode("utf-8")
        return self.base_field.to_python(plaintext)

    # --- Validation and forms -----------------------------------------------------------------

    def validate(self, value: Any, model_instance: models.Model | None) -> None:
        self.base_field.validate(value, model_instance)

    def run_validators(self, value: Any) -> None:
        self.base_field.run_validators(value)

    def formfield(self, **kwargs: Any) -> Any:
        return self.base_field.formfield(**kwargs)

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisers (dumpdata) get ciphertext, never plaintext.
        return str(self.get_prep_value(self.value_from_object(obj)) or "")


def encrypt(base_field: models.Field) -> EncryptedField:
    """Wrap a model field so that its values are stored encrypted.

    ``null``, ``blank``, ``default``, ``verbose_name``, ``help_text`` and ``editable`` are taken
    from the base field, so declarations read like ordinary fields.
    """
    kwargs: dict[str, Any] = {
        "null": base_field.null,
        "blank": base_field.blank,
        "verbose_name": base_field.verbose_name,
        "help_text": base_field.help_text,
        "editable": base_field.editable,
    }
    if base_field.has_default():
        kwargs["default"] = base_field.default
    return EncryptedField(base_field, **kwargs)
