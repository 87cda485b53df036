"""The system check of the database's audit guards (audit/checks.py check_database_guards): a database
whose guards are missing, out of date, altered or cannot be checked is reported, and the server start
refuses what is an error (healthcrypt/checks.py). Fail closed: a check that cannot run is an error."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from audit import checks
from audit.guards import MAINTENANCE_ROLE

pytestmark = pytest.mark.django_db


def _applied_without(monkeypatch: pytest.MonkeyPatch, *missing: tuple[str, str]) -> None:
    real = MigrationRecorder.applied_migrations

    def applied(self: MigrationRecorder) -> dict[tuple[str, str], Any]:
        return {key: value for key, value in real(self).items() if key not in missing}

    monkeypatch.setattr(MigrationRecorder, "applied_migrations", applied)


def test_a_database_without_the_guards_migration_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    _applied_without(monkeypatch, checks.GUARDS_MIGRATION)
    assert [message.id for message in checks.check_database_guards(databases=["default"])] == ["healthcrypt.W012"]


def test_guards_older_than_the_code_are_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    _applied_without(monkeypatch, checks.LATEST_GUARDS_MIGRATION)
    assert [message.id for message in checks.check_database_guards(databases=["default"])] == ["healthcrypt.W015"]


def test_guards_that_cannot_be_checked_are_an_error_naming_no_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(connection: Any) -> list[str]:
        raise DatabaseError("permission denied for table pg_trigger: secret detail")

    monkeypatch.setattr(checks, "guard_problems", unavailable)
    (message,) = checks.check_database_guards(databases=["default"])
    assert message.id == "healthcrypt.E013"
    assert message.is_serious()
    assert "secret detail" not in message.msg


def test_an_altered_guard_is_an_error_and_a_left_over_maintenance_role_only_advice_under_debug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    altered = "trigger records_patient_row_change is disabled"
    left_over = f"the role {MAINTENANCE_ROLE} exists"
    monkeypatch.setattr(checks, "guard_problems", lambda connection: [altered, left_over])

    messages = checks.check_database_guards(databases=["default"])
    assert [(m.id, m.is_serious()) for m in messages] == [("healthcrypt.E012", True), ("healthcrypt.E012", True)]
    assert "re-install the guards" in messages[0].hint
    with override_settings(DEBUG=True):
        messages = checks.check_database_guards(databases=["default"])
    assert [m.is_serious() for m in messages] == [True, False]
    assert messages[1].hint.startswith(f"DROP ROLE {MAINTENANCE_ROLE}")
