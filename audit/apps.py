from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from accounts.signals import auth_event
        from audit import checks, receivers  # noqa: F401  (checks registers the receiver check)
        from audit.alerts import on_access_flagged
        from audit.signals import access_flagged
        from records.signals import (
            break_glass_granted,
            disclosure_made,
            patient_data_accessed,
            patient_data_changed,
            patient_rows_changed,
        )

        patient_data_accessed.connect(receivers.on_patient_data_accessed, dispatch_uid="audit.accessed")
        patient_data_changed.connect(receivers.on_patient_data_changed, dispatch_uid="audit.changed")
        patient_rows_changed.connect(receivers.on_patient_rows_changed, dispatch_uid="audit.rows_changed")
        disclosure_made.connect(receivers.on_disclosure_made, dispatch_uid="audit.disclosure")
        auth_event.connect(receivers.on_auth_event, dispatch_uid="audit.auth")
        break_glass_granted.connect(receivers.on_break_glass_granted, dispatch_uid="audit.break_glass_granted")
        access_flagged.connect(on_access_flagged, dispatch_uid="audit.alert_notify")
        register_change_history()
        from audit import dashboard_panels

        dashboard_panels.register()


def register_change_history() -> None:
    """django-auditlog's post_save/post_delete history: the safety net for writes that bypass services
    (admin, shell). Every encrypted field is masked completely, blind indexes and secrets are left out."""
    from auditlog.registry import auditlog
    from django.apps import apps

    from healthcrypt.fields import EncryptedField

    secrets_and_indexes = {
        "password",
        "key",
        "code_hash",
        "mrn_index",
        "name_dob_index",
        "family_name_index",
        "given_name_index",
        "address_index",
        # Imported rows' source ids are blind indexes too (records.crypto.source_index).
        "source_id",
    }
    for label in ("records", "accounts"):
        for model in apps.get_app_config(label).get_models():
            if auditlog.contains(model):
                continue
            fields = model._meta.concrete_fields
            encrypted = [f.name for f in fields if isinstance(f, EncryptedField)]
            excluded = [f.name for f in fields if f.name in secrets_and_indexes]
            auditlog.register(
                model, exclude_fields=excluded, mask_fields=encrypted, mask_callable="audit.masking.redact"
            )
