"""A package whose records another import wrote meanwhile (two packages about one patient at once) is
imported once more and counts them present, instead of being refused (exchange/packages.py)."""

from __future__ import annotations

import logging

import pytest
from joserfc.jwk import ECKey

from accounts.models import User
from audit.models import ChangeEvent
from exchange.fhir.importer import ImportFailed
from exchange.models import Package
from exchange.packages import PackageRefused, package_import
from exchange.partners.models import Partner
from records.models import Observation, Patient
from tests.exchange.packages.conftest import from_partner
from tests.exchange.packages.test_packages import needs_samples, small_bundle

pytestmark = [pytest.mark.django_db, needs_samples]


def test_a_package_refused_by_a_uniqueness_check_is_imported_once_more(
    partner: Partner,
    partner_sig: ECKey,
    front_desk: User,
    stale_reads: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bundle = small_bundle()
    stale_reads["stale"] = 0
    first = package_import(from_partner(bundle, partner_sig), actor=front_desk)
    rows = (Patient.objects.count(), Observation.objects.count(), ChangeEvent.objects.count())
    stale_reads["stale"] = stale_reads["imports"] + 1  # the next import's first attempt reads stale

    with caplog.at_level(logging.INFO, logger="exchange.fhir.importer"):
        second = package_import(from_partner(bundle, partner_sig), actor=front_desk)

    assert stale_reads["imports"] == 3
    assert (second.counts["Observation"].imported, second.counts["Observation"].present) == (
        0,
        first.counts["Observation"].imported,
    )
    assert (Patient.objects.count(), Observation.objects.count()) == rows[:2]
    assert Package.objects.count() == 2  # two packages received, their records once
    assert second.package.patient_id == first.package.patient_id
    assert f"Package {second.package.package_id} was refused" in caplog.text
    assert "trying it once more" in caplog.text


def test_a_package_refused_twice_is_refused_with_nothing_written_and_its_id_unused(
    partner: Partner, partner_sig: ECKey, front_desk: User, stale_reads: dict[str, int]
) -> None:
    bundle = small_bundle()
    stale_reads["stale"] = 0
    package_import(from_partner(bundle, partner_sig), actor=front_desk)
    before = (Patient.objects.count(), Observation.objects.count(), ChangeEvent.objects.count())
    stale_reads["stale"] = 99
    data = from_partner(bundle, partner_sig)

    with pytest.raises(ImportFailed):
        package_import(data, actor=front_desk)

    assert stale_reads["imports"] == 3
    assert (Patient.objects.count(), Observation.objects.count(), ChangeEvent.objects.count()) == before
    assert Package.objects.count() == 1
    stale_reads["stale"] = 0  # the refusal did not use the package's id: sent again, it is imported
    assert package_import(data, actor=front_desk).package.package_id
    with pytest.raises(PackageRefused, match="received before"):
        package_import(data, actor=front_desk)
