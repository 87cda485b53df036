"""Signals that ``records`` sends and ``audit`` receives (DESIGN.md §4, STYLE.md "audit/").

``records`` never imports ``audit``. Senders use ``Signal.send()``, never ``send_robust()``, so a
receiver that fails aborts the read or write inside its transaction (fail closed). Payloads carry
identifiers, categories and purposes, never patient data values.
"""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: actor, patient_id, patient_ids (every patient a list or search showed), category, categories
# (every section shown), action,
# purpose, explanation (the relationship that allowed it), detail (ids and counts only)
patient_data_accessed = Signal()
# kwargs: actor, patient_id, category, action, fields (names only), object_id
patient_data_changed = Signal()
# The same for many rows written at once (an import's batch): one event per row, all written together
# (one INSERT). kwargs: actor, action, groups (a list of (model, category, fields (names only), rows (a
# list of (patient_id, object_id))), one per kind of row)
patient_rows_changed = Signal()
# kwargs: actor, patient_id, recipient, category, purpose
disclosure_made = Signal()
# kwargs: grant (records.models.BreakGlassGrant, just created), actor. Sent inside the grant's
# transaction: a receiver that fails (for instance the alert for review) undoes the grant.
break_glass_granted = Signal()
# kwargs: grant (ended early by its holder), actor
break_glass_ended = Signal()
