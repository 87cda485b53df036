"""django-auditlog's change history for the exchange app's tables (admin and shell writes), like the
clinical and account tables (audit/apps.py).

- HL7 messages: the raw text is encrypted and masked completely, the keyed digest is left out (a
  blind index, as the records tables' indexes are).
- Directory entries: outside practitioners and organisations, no patient data.
- The partner registry: exchange/partners/history.py (the token hash is left out).
- Packages: ids, digests, dates and key ids, no patient data (the patient is a link).
"""

from __future__ import annotations


def register_change_history() -> None:
    from auditlog.registry import auditlog

    from exchange.models import DirectoryEntry, HL7Message, Package
    from exchange.partners.history import register_change_history as register_partners

    if not auditlog.contains(HL7Message):
        auditlog.register(
            HL7Message, exclude_fields=["digest"], mask_fields=["raw"], mask_callable="audit.masking.redact"
        )
    if not auditlog.contains(DirectoryEntry):
        auditlog.register(DirectoryEntry)
    if not auditlog.contains(Package):
        auditlog.register(Package)
    register_partners()
