from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from accounts.signals import auth_event
        from audit import checks, receivers  # noqa: F401  (checks registers the receiver check)
        from records.signals import disclosure_made, patient_data_accessed, patient_data_changed

        patient_data_accessed.connect(receivers.on_patient_data_accessed, dispatch_uid="audit.accessed")
        patient_data_changed.connect(receivers.on_patient_data_changed, dispatch_uid="audit.changed")
        disclosure_made.connect(receivers.on_disclosure_made, dispatch_uid="audit.disclosure")
        auth_event.connect(receivers.on_auth_event, dispatch_uid="audit.auth")
