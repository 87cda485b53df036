"""Key rotation: the work behind ``manage.py rotate_keys`` (records/management/commands/rotate_keys.py,
whose docstring explains how a rotation stays safe while the application keeps serving).

``plan`` finds what to rotate (the encrypted tables and columns) and holds the counters; ``values``
re-encrypts stale values in batches; ``attachments`` re-encrypts attachment files; ``report`` prints
the summary and the key usage. The parts are mixed into the command, which only reads its options.
"""

from __future__ import annotations

from records.rotation.attachments import FileRotation
from records.rotation.plan import (
    DEFAULT_BATCH_SIZE,
    MAX_LISTED_PROBLEMS,
    MAX_PASSES,
    NOT_A_CIPHERTEXT,
    WRITE_ATTEMPTS,
    EncryptedColumn,
    EncryptedTable,
    Problem,
    Progress,
    RotationState,
    Totals,
    concrete_column,
    encrypted_tables,
)
from records.rotation.report import KeyReport
from records.rotation.values import ValueRotation

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_LISTED_PROBLEMS",
    "MAX_PASSES",
    "NOT_A_CIPHERTEXT",
    "WRITE_ATTEMPTS",
    "EncryptedColumn",
    "EncryptedTable",
    "FileRotation",
    "KeyReport",
    "Problem",
    "Progress",
    "RotationState",
    "Totals",
    "ValueRotation",
    "concrete_column",
    "encrypted_tables",
]
