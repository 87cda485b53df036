"""The alert email: an absolute link to the alert page that the security team can open, and nothing
about the patient or the user (audit/alerts.py alert_notify, templates/emails/alert-*)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from audit.models import Alert
from tests.audit.rule_helpers import on_ward, open_chart
from tests.conftest import sign_in

SITE = "https://ehr.hospital.example"


def _same_surname_as_a_patient(nurse: User, security: User, security_email: str) -> None:
    """The nurse shares the surname Mbeki (of the patient each test opens); the security user's address."""
    security.email = security_email
    security.save(update_fields=["email"])
    nurse.last_name = "Mbeki"
    nurse.save(update_fields=["last_name"])


@override_settings(SITE_URL=SITE + "/")
def test_alert_email_links_to_the_alert_page_and_holds_no_patient_data(
    nurse: User, security: User, django_capture_on_commit_callbacks: Any
) -> None:
    _same_surname_as_a_patient(nurse, security, "soc@hospital.example")
    relative = on_ward(nurse, family_name="Mbeki", given_name="Thabo")
    with django_capture_on_commit_callbacks(execute=True):
        open_chart(nurse, relative)
    (message,) = mail.outbox
    alert = Alert.objects.get()
    assert alert.rule == "same_surname"
    (url,) = re.findall(r"https?://\S+", message.body)
    assert url == SITE + reverse("security:alert", args=[alert.pk])
    response = sign_in(Client(), security).get(urlsplit(url).path)
    assert response.status_code == 200
    assert response.context["alert"] == alert
    text = message.subject + message.body
    for secret in ("Mbeki", "Thabo", relative.mrn, nurse.username, f"patients/{relative.pk}"):
        assert secret not in text


def test_the_alert_link_is_refused_to_the_user_it_is_about(
    nurse: User, security: User, django_capture_on_commit_callbacks: Any
) -> None:
    _same_surname_as_a_patient(nurse, security, "soc@hospital.example")
    with django_capture_on_commit_callbacks(execute=True):
        open_chart(nurse, on_ward(nurse, family_name="Mbeki"))
    (url,) = re.findall(r"/security/alerts/\d+/", mail.outbox[0].body)
    assert sign_in(Client(), nurse).get(url).status_code in (403, 404)


def test_a_broken_mail_server_does_not_fail_the_chart_and_is_logged_without_patient_data(
    nurse: User, security: User, django_capture_on_commit_callbacks: Any, monkeypatch: Any, caplog: Any
) -> None:
    # Mail is a courtesy on top of the alert queue: the chart is shown, the alert is kept, the failure logged.
    from audit import alerts

    _same_surname_as_a_patient(nurse, security, "soc@hospital.example")

    def unreachable(*args: object, **kwargs: object) -> int:
        raise ConnectionRefusedError("smtp.hospital.example:25")

    monkeypatch.setattr(alerts, "send_mail", unreachable)
    relative = on_ward(nurse, family_name="Mbeki", given_name="Thabo")
    with django_capture_on_commit_callbacks(execute=True):
        chart = open_chart(nurse, relative)
    assert chart.patient.id == relative.pk  # the chart was read and returned
    alert = Alert.objects.get()
    assert not mail.outbox
    assert f"Could not mail the security team about alert #{alert.pk}" in caplog.text
    for secret in ("Mbeki", "Thabo", relative.mrn):
        assert secret not in caplog.text


def test_no_mail_is_sent_when_no_active_security_user_has_an_address(
    nurse: User, security: User, django_capture_on_commit_callbacks: Any
) -> None:
    _same_surname_as_a_patient(nurse, security, "")
    with django_capture_on_commit_callbacks(execute=True):
        open_chart(nurse, on_ward(nurse, family_name="Mbeki"))
    assert Alert.objects.filter(rule="same_surname").exists()
    assert not mail.outbox
