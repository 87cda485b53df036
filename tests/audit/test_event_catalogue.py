"""Black-box walk through the event catalogue: each action done as a person would, through the views,
leaves exactly the audit event(s) it should, with the right actor, patient, category and action."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from accounts.roles import Role
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent
from records.demo_clinical import tiny_png
from records.models import Attachment
from tests.accounts.helpers import code_step, current_code, password_step
from tests.conftest import totp_device
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


class Seen:
    """New audit rows since the last call."""

    def __init__(self) -> None:
        self.marks = dict.fromkeys((AccessEvent, ChangeEvent, AuthEventRecord), 0)
        self.new()

    def new(self) -> dict[type, list[Any]]:
        fresh = {}
        for model, mark in self.marks.items():
            rows = list(model.objects.filter(pk__gt=mark).order_by("pk"))
            fresh[model] = rows
            if rows:
                self.marks[model] = rows[-1].pk
        return fresh


@pytest.fixture
def seen(ward: Ward) -> Seen:
    return Seen()


@pytest.fixture
def clock(time_machine: Any) -> Any:
    import datetime

    time_machine.move_to(datetime.datetime(2026, 11, 21, 10, 0, 3, tzinfo=datetime.UTC), tick=False)
    return time_machine


def only(rows: list[Any], **expected: Any) -> Any:
    assert len(rows) == 1, rows
    for key, value in expected.items():
        assert getattr(rows[0], key) == value, (key, getattr(rows[0], key), value)
    return rows[0]


def test_chart_view_one_event_listing_its_sections(
    seen: Seen, ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(physician)
    seen.new()
    client.get(reverse("records:chart", args=[ward.treated.pk]))
    (event,) = seen.new()[AccessEvent]
    assert (event.actor_id, event.patient_id, event.action) == (physician.pk, ward.treated.pk, "view")
    assert event.sections == sorted(set(event.sections))  # distinct, in a stable order
    assert {"demographics", "observations", "notes", "medications", "orders"} <= set(event.sections)
    assert event.category in event.sections


def test_section_page_is_recorded(
    seen: Seen, ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(physician)
    seen.new()
    client.get(reverse("records:chart", args=[ward.treated.pk]) + "?obs_page=2")
    (event,) = seen.new()[AccessEvent]
    assert "observations" in event.sections


def test_search(seen: Seen, ward: Ward, front_desk: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(front_desk)
    seen.new()
    client.post(reverse("records:search"), {"mrn": ward.treated.mrn})
    access = seen.new()[AccessEvent]
    search = only(
        [e for e in access if e.action == "search"], actor_id=front_desk.pk, patient_id=None, category="demographics"
    )
    assert ward.treated.mrn not in str(search.detail)
    only([e for e in access if e.action == "search_result"], patient_id=ward.treated.pk)


def test_list_page(seen: Seen, ward: Ward, nurse: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(nurse)
    seen.new()
    client.get(reverse("records:my_patients"))
    only(seen.new()[AccessEvent], actor_id=nurse.pk, patient_id=ward.treated.pk, action="list", category="demographics")


def test_download(
    seen: Seen, ward: Ward, radiology: User, physician: User, client_for: Callable[[User], Client], tmp_path: Any
) -> None:
    with override_settings(MEDIA_ROOT=tmp_path):
        client_for(radiology).post(
            reverse("records:order_upload", args=[ward.radiology_order.pk]),
            {"file": SimpleUploadedFile("x.png", tiny_png(1), content_type="image/png")},
        )
        change = seen.new()[ChangeEvent]
        only([c for c in change if c.category == "imaging"], actor_id=radiology.pk, action="create")
        client = client_for(physician)
        seen.new()
        response = client.get(reverse("records:attachment_download", args=[Attachment.objects.get().pk]))
        b"".join(response.streaming_content)
    only(
        seen.new()[AccessEvent],
        actor_id=physician.pk,
        patient_id=ward.treated.pk,
        category="imaging",
        action="download",
    )


def test_change_through_a_view(seen: Seen, ward: Ward, nurse: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(nurse)
    seen.new()
    client.post(reverse("records:vitals_new", args=[ward.treated.pk]), {"heart_rate": "80"})
    change = only(
        seen.new()[ChangeEvent], actor_id=nurse.pk, patient_id=ward.treated.pk, category="observations", action="create"
    )
    assert "value" in change.fields
    assert "80" not in str(change.fields)


def test_sign_in_and_sign_out(seen: Seen, physician: User, clock: Any) -> None:
    device = totp_device(physician)
    client = Client()
    password_step(client, "physician")
    code_step(client, current_code(device))
    only(seen.new()[AuthEventRecord], event="login", actor_id=physician.pk, target_id=physician.pk, ip="127.0.0.1")
    client.post(reverse("accounts:logout"))
    only(seen.new()[AuthEventRecord], event="logout", target_id=physician.pk)


def test_failure_and_lockout(seen: Seen, physician: User) -> None:
    client = Client()
    password_step(client, "physician", password="wrong password")
    only(seen.new()[AuthEventRecord], event="login_failed", target_id=physician.pk, username="physician")
    for _ in range(4):
        password_step(client, "physician", password="wrong password")
    events = [e.event for e in seen.new()[AuthEventRecord]]
    assert events.count("lockout") == 1
    assert events.count("login_failed") == 4


def test_enrolment_and_recovery_code_use(seen: Seen, make_persona: Callable[..., User], clock: Any) -> None:
    make_persona(Role.NURSE, username="fresh_nurse")
    client = Client()
    password_step(client, "fresh_nurse")
    client.get(reverse("accounts:enrol"))
    from accounts.models import TOTPDevice

    device = TOTPDevice.objects.get(user__username="fresh_nurse")
    page = client.post(reverse("accounts:enrol"), {"otp_token": current_code(device)})
    events = [e.event for e in seen.new()[AuthEventRecord]]
    assert events == ["otp_enrolled", "login"]
    codes = re.findall(r"<code>([a-z2-7]{4}-[a-z2-7]{4})</code>", page.content.decode())
    client.post(reverse("accounts:logout"))
    seen.new()
    password_step(client, "fresh_nurse")
    code_step(client, codes[0])
    assert [e.event for e in seen.new()[AuthEventRecord]] == ["login", "recovery_code_used"]


def test_password_change_and_step_up(
    seen: Seen, physician: User, client_for: Callable[[User], Client], clock: Any
) -> None:
    client = client_for(physician)
    device = totp_device(physician)
    seen.new()
    clock.shift(60)
    client.post(reverse("accounts:step_up"), {"otp_token": current_code(device), "next": "/"})
    only(seen.new()[AuthEventRecord], event="step_up", actor_id=physician.pk)
    clock.shift(60)
    new = "a brand new passphrase 9"
    client.post(
        reverse("accounts:password_change"),
        {
            "old_password": "correct horse battery staple 42",
            "new_password1": new,
            "new_password2": new,
            "otp_token": current_code(device),
        },
    )
    only(seen.new()[AuthEventRecord], event="password_changed", target_id=physician.pk)


def test_account_creation_role_change_and_deactivation_in_the_admin(
    seen: Seen, operator: User, nurse: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(operator)
    seen.new()
    response = client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "new_clerk",
            "password1": "a long new password 77",
            "password2": "a long new password 77",
            "role": "front_desk",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    only(seen.new()[AuthEventRecord], event="account_created", actor_id=operator.pk)
    url = reverse("admin:accounts_user_change", args=[nurse.pk])
    form = client.get(url).context["adminform"].form
    data = {
        k: v
        for k, v in form.initial.items()
        if v is not None and k not in ("password", "groups", "user_permissions", "last_login", "date_joined")
    }
    data.update({"role": "lab", "is_active": "", "date_joined_0": "2026-01-01", "date_joined_1": "08:00:00"})
    data.pop("is_active")
    assert client.post(url, data).status_code == 302
    events = {e.event: e for e in seen.new()[AuthEventRecord]}
    assert set(events) == {"account_deactivated", "role_changed"}
    assert events["role_changed"].detail["after"]["role"] == "lab"
    assert events["account_deactivated"].target_id == nurse.pk


def test_idle_sign_out(seen: Seen, physician: User, client_for: Callable[[User], Client], clock: Any) -> None:
    client = client_for(physician)
    seen.new()
    clock.shift(16 * 60)
    client.get("/")
    only(seen.new()[AuthEventRecord], event="idle_logout", target_id=physician.pk)


def test_admin_refuses_an_account_without_a_role_with_a_message(
    operator: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(operator).post(
        reverse("admin:accounts_user_add"),
        {
            "username": "no_role",
            "password1": "a long new password 77",
            "password2": "a long new password 77",
            "usable_password": "true",
        },
    )
    assert response.status_code == 200
    assert b"needs a role" in response.content
    assert not User.objects.filter(username="no_role").exists()
