"""What the export commands share (``export_fhir``, ``export_package``): who may export, which patient,
and one translation of every refusal into a CommandError that names the rule, never the patient."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from accounts.roles import Capability, has_capability
from exchange.fhir.export import ExportInvalid
from records.crypto import mrn_index
from records.models import Patient
from records.selectors import AccessNotRecorded, AccessRefused
from records.selectors.export import ExportRequestInvalid


def export_actor(username: str) -> Any:
    """The active account named by ``--actor`` whose role may export records; one answer otherwise."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None or not user.is_active or not has_capability(user, Capability.EXPORT_RECORD):
        raise CommandError("--actor must be an active account whose role may export records (export_record).")
    return user


def patient_by_mrn(mrn: str) -> Patient:
    """The patient of ``--patient``, found by the blind index of the MRN (the row stays sealed)."""
    patient = Patient.objects.filter(mrn_index=mrn_index(mrn)).first()
    if patient is None:
        raise CommandError("No patient has this medical record number.")
    return patient


@contextmanager
def export_refusals(refused_as: str, *also: type[Exception]) -> Iterator[None]:
    """Turn every refusal of an export into a CommandError; ``also``: more refusals worded as
    ``"<refused_as> was refused: <message>"`` (messages that name settings or partners, never patients)."""
    worded: tuple[type[Exception], ...] = (ExportRequestInvalid, *also)
    try:
        yield
    except AccessRefused as refused:
        # Names the rule, never the patient: "no relationship" as the chart's 404, a weak role as its 403.
        raise CommandError(
            f"--actor may not export this patient's record ({refused.explanation.replace('_', ' ')})."
        ) from None
    except AccessNotRecorded:
        raise CommandError("The disclosure could not be recorded, so nothing was exported.") from None
    except worded as refused:
        raise CommandError(f"{refused_as} was refused: {str(refused).rstrip('.')}.") from None
    except ExportInvalid:
        raise CommandError("The export did not validate against FHIR R4 (a bug); nothing was written.") from None
    except FileExistsError:
        raise CommandError("--out names a file that exists; add --force to overwrite it.") from None
    except OSError as error:
        raise CommandError(f"--out could not be written ({error.strerror}).") from None
