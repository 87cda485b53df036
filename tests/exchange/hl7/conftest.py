"""Fixtures of the HL7 v2 tests: the interface account, the departments orders go to, the shared samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts.models import Department, User
from exchange.hl7.account import interface_account_create
from tests.factories import PatientFactory

# ../shared/data/hl7v2 next to the repository (data/README.md there says where each file comes from).
SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hl7v2"


def sample(name: str) -> bytes:
    """The bytes of one shared sample; skips the test (with the reason) when the folder is absent."""
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"the shared HL7 v2 samples are absent ({SAMPLES})")
    return path.read_bytes()


@pytest.fixture
def interface(db: None) -> User:
    user, _ = interface_account_create()
    return user


@pytest.fixture
def departments(db: None) -> dict[str, Department]:
    return {
        "radiology": Department.objects.create(code="radiology", name="Radiology", kind=Department.Kind.RADIOLOGY),
        "lab": Department.objects.create(code="lab", name="Laboratory", kind=Department.Kind.LAB),
    }


def registered(mrn: str, **kwargs: object) -> int:
    """A patient already registered here with ``mrn`` (as results and orders need); returns the id."""
    return int(PatientFactory(mrn=mrn, **kwargs).pk)
