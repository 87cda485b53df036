"""manage.py ingest_hl7 and hl7_listen: per-message lines, a summary, the exit code, the interface account."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from accounts.roles import Role
from exchange.hl7.account import interface_account_create
from records.models import Patient
from tests.exchange.hl7.conftest import SAMPLES, sample
from tests.exchange.hl7.test_ingest import ADT_A04

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("ingest_hl7", *args, stdout=out)
    return out.getvalue()


def test_prints_each_message_and_a_summary(interface: User, tmp_path: Path) -> None:
    path = tmp_path / "two.hl7"
    path.write_text(ADT_A04.format(control="C-1", mrn="M-1") + ADT_A04.format(control="C-2", mrn="M-2"))
    out = run(str(path))
    assert "two.hl7: C-1 ADT^A04 AA" in out
    assert "two.hl7: C-2 ADT^A04 AA" in out
    assert "2 message(s): 2 accepted (AA), 0 errors (AE), 0 rejected (AR)" in out
    assert Patient.objects.count() == 2


def test_exits_non_zero_when_any_message_was_not_accepted(interface: User) -> None:
    sample("SIU-S12-01.hl7")
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 2 message"):
        call_command("ingest_hl7", str(SAMPLES / "ADT04-251.hl7"), str(SAMPLES / "SIU-S12-01.hl7"), stdout=out)
    assert "MSG00012 SIU^S12 AR" in out.getvalue()
    assert "1 accepted (AA), 0 errors (AE), 1 rejected (AR)" in out.getvalue()


def test_acks_are_printed_on_request(interface: User, tmp_path: Path) -> None:
    path = tmp_path / "one.hl7"
    path.write_text(ADT_A04.format(control="C-3", mrn="M-3"))
    assert "MSA|AA|C-3|" in run(str(path), "--acks")


def test_refuses_to_start_without_the_interface_account(db: None, tmp_path: Path) -> None:
    path = tmp_path / "one.hl7"
    path.write_text(ADT_A04.format(control="C-4", mrn="M-4"))
    with pytest.raises(CommandError, match="No account named 'hl7-interface'"):
        run(str(path))
    assert not Patient.objects.exists()


def test_create_account_makes_an_account_nobody_can_sign_in_as(db: None, tmp_path: Path) -> None:
    path = tmp_path / "one.hl7"
    path.write_text(ADT_A04.format(control="C-5", mrn="M-5"))
    run(str(path), "--create-account")
    account = User.objects.get(username="hl7-interface")
    assert not account.has_usable_password()
    assert (account.role, account.is_superuser, account.is_active) == (Role.FRONT_DESK, False, True)
    assert interface_account_create()[1] is False  # a second call finds it


def test_refuses_an_account_that_can_sign_in(db: None, tmp_path: Path) -> None:
    User.objects.create_user(username="clerk", password="a password 1234", role=Role.FRONT_DESK)
    path = tmp_path / "one.hl7"
    path.write_text(ADT_A04.format(control="C-6", mrn="M-6"))
    with pytest.raises(CommandError, match="not an interface account"):
        run(str(path), "--actor", "clerk")


def test_an_unreadable_file_is_a_clear_error(interface: User, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot be read"):
        run(str(tmp_path / "missing.hl7"))


def test_hl7_listen_refuses_a_bad_port_and_a_missing_account(db: None) -> None:
    with pytest.raises(CommandError, match="--port"):
        call_command("hl7_listen", "--port", "70000", stdout=StringIO())
    with pytest.raises(CommandError, match="No account named"):
        call_command("hl7_listen", "--port", "0", stdout=StringIO())
