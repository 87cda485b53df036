"""Encrypted model fields: ``encrypt(models.CharField(max_length=100))``, bound to their column and row.

The wrapped field decides how a value is validated, converted and shown in forms; this field
stores it as an AES-GCM token (healthcrypt/crypto.py) in a text column. The database never sees
plaintext, and a value that cannot be decrypted raises DecryptionError: it is never handed back as
if the ciphertext were the data. Encrypted columns cannot be filtered on (exact lookups use a blind
index column instead); only ``isnull`` is allowed, so a mistaken ``filter(name=...)`` fails loudly
instead of silently matching nothing.

Row binding (docs/decisions/0007-row-bound-ciphertext.md): every model with an encrypted field has
a random ``row_uid`` (:class:`RowIdentity`), and each token's associated data names it, so a value
copied into the same column of another row does not decrypt. ``from_db_value`` cannot do that (it
never sees the instance), so:

- reading wraps each token in a :class:`Sealed` value; the attribute descriptor that
  ``contribute_to_class`` installs opens it on first access with the row identity the instance was
  loaded with, and keeps the plaintext for the next access;
- writing happens in ``pre_save(instance, add)``, which encrypts for the instance's ``row_uid``
  (an untouched sealed value that is already row-bound under the current key is written back
  as it is, without decrypting it);
- anything that reaches the database without an instance (``QuerySet.update(field=value)``,
  ``bulk_update``, ``Value(...)``) is refused with FieldError instead of writing an unbound value;
- ``values()``/``values_list()`` of an encrypted field give :class:`Sealed` values, which never
  turn into plaintext by accident (open one explicitly with the row's ``row_uid``).
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression
from django.db.models.query_utils import DeferredAttribute

from healthcrypt.crypto import ROW_BOUND_VERSION, DecryptionError, field_keyring, row_identity

ROW_UID = "row_uid"
# Where an instance keeps the row identity it was loaded with (the one its sealed values are bound
# to); kept apart from ``row_uid`` so that changing ``row_uid`` in memory cannot redirect a decrypt.
_LOADED_ROW = "_row_uid_at_load"

SUPPORTED_BASE_FIELDS: tuple[type[models.Field[Any, Any]], ...] = (
    models.CharField,  # includes EmailField, SlugField
    models.TextField,
    models.DateField,  # includes DateTimeField
    models.IntegerField,
    models.DecimalField,
    models.FloatField,
    models.BooleanField,
)

_UNOPENED: Any = object()


def _accept_column_bound() -> bool:
    # Read at each hc1 value, not cached: tests and operators flip it (override_settings, restart).
    return bool(getattr(settings, "FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND", False))


class Sealed:
    """A stored token of an encrypted field, not yet decrypted.

    It is what ``from_db_value`` returns; model instances open it on attribute access, and
    ``values()``/``values_list()`` hand it out as it is. It is not a string: its ``str()`` and
    ``repr()`` name the field only, so it can never pass for the data or leak the token into a
    log or a page. ``open(row_uid=...)`` decrypts it explicitly.
    """

    __slots__ = ("_plaintext", "field", "token")

    def __init__(self, token: str, field: EncryptedField) -> None:
        self.token = token
        self.field = field
        self._plaintext: Any = _UNOPENED

    def __repr__(self) -> str:
        return f"<Sealed {self.field.context}>"

    __str__ = __repr__

    def __getstate__(self) -> dict[str, Any]:
        # A pickled instance (cache, session) carries the token, never the decrypted value.
        return {"token": self.token, "field": self.field}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.token = state["token"]
        self.field = state["field"]
        self._plaintext = _UNOPENED

    @property
    def is_current(self) -> bool:
        """Whether the token is row-bound and under the current key (it can be written back as is)."""
        return self.token.startswith(f"{ROW_BOUND_VERSION}:{field_keyring().current_kid}:")

    def open(self, *, row_uid: Any, pk: Any = None) -> Any:
        """Decrypt for the row ``row_uid``; raise DecryptionError naming model, pk (or row) and field."""
        if self._plaintext is not _UNOPENED:
            return self._plaintext
        return self._open(row_identity(row_uid) if row_uid is not None else None, pk)

    def _open(self, row: str | None, pk: Any) -> Any:
        # ``row`` is already canonical (healthcrypt.crypto.row_identity): parsing a UUID again for
        # every value of every row was a measurable share of a chart page.
        if self._plaintext is not _UNOPENED:
            return self._plaintext
        field = self.field
        try:
            plaintext = field_keyring().decrypt(
                self.token,
                context=field.context,
                row=row,
                accept_column_bound=self.token.startswith("hc1:") and _accept_column_bound(),
            )
        except DecryptionError as exc:
            where = f"pk={pk}" if pk is not None else f"row={row}"
            # The same exception class, now saying which value: the key id and reason, never the token.
            raise type(exc)(f"{field.model._meta.label} {where} field={field.name}: {exc}") from None
        self._plaintext = field.base_field.to_python(plaintext.decode("utf-8"))
        return self._plaintext


class Ciphertext(str):
    """A token made for a known row by ``pre_save``; the only value ``get_prep_value`` lets through."""

    __slots__ = ()


def _loaded_row(instance: models.Model) -> Any:
    """The row identity the instance's sealed values are bound to, fetched once if it was deferred."""
    row = instance.__dict__.get(_LOADED_ROW)
    if row is None:
        if instance.pk is None:
            return None
        # Loaded with only()/defer() without row_uid: read it from the database (one query) rather
        # than trust an in-memory value that may have been changed.
        model = type(instance)
        db = instance._state.db or "default"
        found = model._base_manager.using(db).filter(pk=instance.pk).values_list(ROW_UID, flat=True).first()
        row = row_identity(found) if found is not None else None
        instance.__dict__[_LOADED_ROW] = row
        if found is not None and ROW_UID not in instance.__dict__:
            instance.__dict__[ROW_UID] = found
    return row


class EncryptedAttribute(DeferredAttribute):
    """The instance attribute of an encrypted field: opens a sealed value on first read."""

    def __get__(self, instance: models.Model | None, cls: Any = None) -> Any:
        if instance is None:
            return self
        try:
            value = instance.__dict__[self.field.attname]
        except KeyError:
            value = super().__get__(instance, cls)  # deferred: loaded through refresh_from_db
        if type(value) is Sealed:
            if value._plaintext is not _UNOPENED:
                return value._plaintext
            return value._open(_loaded_row(instance), instance.pk)
        return value

    def __set__(self, instance: models.Model, value: Any) -> None:
        # A data descriptor, so that reads always come through __get__ even once a value is stored.
        instance.__dict__[self.field.attname] = value


class RowIdentity(models.Model):
    """Abstract base of every model with encrypted fields: a random identity that each token is bound to.

    ``row_uid`` is assigned when the instance is created in Python (before the first save, so the
    first INSERT already writes row-bound tokens) and never changes. It is random rather than the
    primary key because the key is only known after the INSERT, and a UUID does not depend on the
    database (dumps, restores and merges keep it).
    """

    row_uid = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Any:
        instance = super().from_db(db, field_names, values)
        row = instance.__dict__.get(ROW_UID)
        if row is not None:
            instance.__dict__[_LOADED_ROW] = row_identity(row)
        return instance

    def refresh_from_db(self, using: str | None = None, fields: Any = None, from_queryset: Any = None) -> None:
        if fields is not None:
            fields = set(fields)
            if any(isinstance(f, EncryptedField) and f.attname in fields for f in self._meta.concrete_fields):
                # Reloaded values are opened with the identity read in the same query.
                fields.add(ROW_UID)
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        row = self.__dict__.get(ROW_UID)
        if row is not None and (fields is None or ROW_UID in fields):
            self.__dict__[_LOADED_ROW] = row_identity(row)


class EncryptedField(models.TextField[Any, Any]):
    """A column holding the encrypted form of ``base_field``'s value."""

    description = "Encrypted %(base_description)s"
    empty_strings_allowed = True
    descriptor_class = EncryptedAttribute
    _context: str

    def __init__(self, base_field: models.Field[Any, Any], **kwargs: Any) -> None:
        if not isinstance(base_field, SUPPORTED_BASE_FIELDS):
            raise TypeError(f"encrypt() does not support {type(base_field).__name__}.")
        if base_field.primary_key or base_field.unique or getattr(base_field, "db_index", False):
            raise TypeError("An encrypted field cannot be a key, unique or indexed; use a blind index.")
        self.base_field = base_field
        super().__init__(**kwargs)

    @property
    def context(self) -> str:
        """``app_label.Model.field``: binds each ciphertext to its column (the row is bound apart)."""
        # Set once the field is on its model (every value of a chart page asked for it again).
        context = self.__dict__.get("_context")
        return context if context is not None else f"{self.model._meta.label}.{self.name}"

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        # A copy contributed to another model (inheritance) gets that model's context here again.
        self._context = f"{cls._meta.label}.{name}"
        self.base_field.set_attributes_from_name(name)
        self.base_field.model = cls

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [*super().check(**kwargs), *self.base_field.check(**kwargs), *self._check_row_identity()]

    def _check_row_identity(self) -> list[checks.CheckMessage]:
        model = getattr(self, "model", None)
        if model is None or model._meta.abstract:
            return []
        if not issubclass(model, RowIdentity):
            return [
                checks.Error(
                    f"{model._meta.label} has encrypted fields but no row identity.",
                    hint="Derive the model from healthcrypt.fields.RowIdentity, so its values are bound to their row.",
                    obj=self,
                    id="healthcrypt.E020",
                )
            ]
        return []

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        # Field.clone(), spelt out (django-stubs does not declare it).
        _name, _path, base_args, base_kwargs = self.base_field.deconstruct()
        kwargs["base_field"] = type(self.base_field)(*base_args, **base_kwargs)
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

    def _refuse_unbound_write(self) -> FieldError:
        return FieldError(
            f"{self.context} is encrypted and bound to its row: write it by saving the instance "
            "(save(), create(), bulk_create()), not with QuerySet.update(), bulk_update() or an expression."
        )

    def get_prep_value(self, value: Any) -> Any:
        # Only tokens that pre_save made for a known row go to the database. A plain value here
        # came without its instance (QuerySet.update, bulk_update, raw saves), so it cannot be
        # bound to a row: refuse it loudly rather than write something that does not decrypt.
        if value is None or isinstance(value, Expression):
            return value
        if type(value) is Ciphertext:
            return str(value)
        raise self._refuse_unbound_write()

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        """The token to store for this instance: encrypted for its ``row_uid`` (or the untouched token)."""
        value = model_instance.__dict__.get(self.attname)
        if value is None:
            return None
        row_uid = model_instance.__dict__.get(ROW_UID)
        if row_uid is None and not add:
            _loaded_row(model_instance)  # loaded with only()/defer() without row_uid
            row_uid = model_instance.__dict__.get(ROW_UID)
        if row_uid is None:
            raise FieldError(f"{self.context}: {model_instance._meta.label} has no row_uid to bind its values to.")
        row = row_identity(row_uid)
        if type(value) is Sealed:
            if value.is_current and model_instance.__dict__.get(_LOADED_ROW) == row:
                # Untouched and already bound to this row under the current key: nothing to redo.
                return Ciphertext(value.token)
            # Old key, old format, or a new row_uid: open with the identity it was loaded with.
            value = value._open(_loaded_row(model_instance), model_instance.pk)
        prepared = self.base_field.get_prep_value(self.base_field.to_python(value))
        if prepared is None:
            return None
        return Ciphertext(field_keyring().encrypt(str(prepared).encode("utf-8"), context=self.context, row=row))

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        # No instance here, hence no row identity: decrypting waits for the attribute access.
        if value is None:
            return None
        return Sealed(value, self)

    # --- Validation and forms -----------------------------------------------------------------

    def validate(self, value: Any, model_instance: models.Model | None) -> None:
        self.base_field.validate(value, model_instance)

    def run_validators(self, value: Any) -> None:
        self.base_field.run_validators(value)

    def formfield(
        self,
        form_class: type[forms.Field] | None = None,
        choices_form_class: type[forms.ChoiceField] | None = None,
        **kwargs: Any,
    ) -> forms.Field | None:
        # The base field picks its own form field (a date field a date input, ...) unless told.
        if form_class is not None:
            kwargs["form_class"] = form_class
        if choices_form_class is not None:
            kwargs["choices_form_class"] = choices_form_class
        return self.base_field.formfield(**kwargs)

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisers (dumpdata) get ciphertext bound to the row, never plaintext.
        return str(self.pre_save(obj, add=False) or "")


def encrypt(base_field: models.Field[Any, Any]) -> EncryptedField:
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
