"""The one write path of the clinical record (DESIGN.md §4).

Every function takes the acting user explicitly (``None`` only for system jobs such as the demo
seed or an import), checks capability and relationship, validates with ``full_clean()`` inside a
transaction, and sends ``patient_data_changed`` in that same transaction, so a failing audit
receiver undoes the change. Signals name the fields that changed, never their values.

Where to look: ``patients`` (registration, demographics, encounters, care team), ``appointments``
(book, cancel, check in), ``orders``,
``interfaces`` (what an HL7 feed writes, as its service account),
``clinical`` (observations, notes, medications, diagnoses, allergies), ``safety`` (the allergy,
duplicate and result-value checks those run), ``attachments``, and
``base`` (the checks and the change signal every write shares). Every public name is importable
from ``records.services`` itself.
"""

from __future__ import annotations

from records.services.appointments import (
    AppointmentConflict,
    appointment_book,
    appointment_cancel,
    appointment_check_in,
)
from records.services.attachments import attachment_upload
from records.services.base import D, DuplicatePatient, EncounterAlreadyClosed, RecordNotFound
from records.services.clinical import (
    allergy_record,
    condition_record,
    medication_administer,
    medication_prescribe,
    note_amend,
    note_write,
    observation_record,
    vitals_record,
)
from records.services.imports import imported_entries_create, imported_entry_create, imported_patient_create
from records.services.interfaces import (
    Upserted,
    interface_account_check,
    interface_encounter_open,
    interface_encounters_close,
    interface_order_place,
    interface_patient_find,
    interface_patient_upsert,
    interface_result_record,
)
from records.services.orders import order_cancel, order_complete, order_place
from records.services.patients import (
    DEMOGRAPHIC_FIELDS,
    care_assignment_create,
    care_assignment_end,
    encounter_admit,
    encounter_discharge,
    patient_register,
    patient_update_demographics,
    possible_duplicates,
)
from records.services.patients import (
    _set_indexes as _set_indexes,  # bench/detection.py sets the blind indexes of bulk rows itself
)
from records.services.safety import OVERRIDE_HINT, AllergyConflict, AllergyWarning

__all__ = [
    "DEMOGRAPHIC_FIELDS",
    "OVERRIDE_HINT",
    "AllergyConflict",
    "AllergyWarning",
    "AppointmentConflict",
    "D",
    "DuplicatePatient",
    "EncounterAlreadyClosed",
    "RecordNotFound",
    "Upserted",
    "allergy_record",
    "appointment_book",
    "appointment_cancel",
    "appointment_check_in",
    "attachment_upload",
    "care_assignment_create",
    "care_assignment_end",
    "condition_record",
    "encounter_admit",
    "encounter_discharge",
    "imported_entries_create",
    "imported_entry_create",
    "imported_patient_create",
    "interface_account_check",
    "interface_encounter_open",
    "interface_encounters_close",
    "interface_order_place",
    "interface_patient_find",
    "interface_patient_upsert",
    "interface_result_record",
    "medication_administer",
    "medication_prescribe",
    "note_amend",
    "note_write",
    "observation_record",
    "order_cancel",
    "order_complete",
    "order_place",
    "patient_register",
    "patient_update_demographics",
    "possible_duplicates",
    "vitals_record",
]
