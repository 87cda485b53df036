"""Radiology's and the laboratory's history (issue 10): completed orders stay readable to the department
that did the work (read-only), and to nobody else through it; downloads carry a safe name."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import DataCategory, Role
from audit.models import AccessEvent, Alert
from records.demo_clinical import tiny_png
from records.downloads import DOWNLOAD_NAMES, download_name
from records.forms import ALLOWED_SIGNATURES
from records.models import Attachment, Order
from records.selectors import LIST_PER_PAGE, AccessRefused, completed_order_for_department, completed_orders
from records.selectors.worklist_history import completed_by_department
from records.services import attachment_upload, observation_record, order_complete, order_place
from tests.factories import DepartmentFactory, UserFactory
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(tmp_path: Path) -> Iterator[Path]:
    with override_settings(MEDIA_ROOT=tmp_path):
        yield tmp_path


def _complete_lab_order(ward: Ward, lab: User) -> Order:
    observation_record(
        actor=lab,
        patient_id=ward.treated.pk,
        category="laboratory",
        display="Troponin T",
        value="0.01",
        unit="ng/mL",
        order_id=ward.lab_order.pk,
    )
    return order_complete(actor=lab, order_id=ward.lab_order.pk)


def _other_lab(make_persona: Callable[..., User]) -> User:
    other = DepartmentFactory(code="lab-2", name="Second lab", kind=Department.Kind.LAB)
    return UserFactory(username="lab_two", role=Role.LAB, department=other)


# --- The completed list ---------------------------------------------------------------------------


def test_completed_list_shows_only_this_departments_completed_orders_newest_first(
    ward: Ward,
    lab: User,
    radiology: User,
    physician: User,
    make_persona: Callable[..., User],
    client_for: Callable[[User], Client],
) -> None:
    _complete_lab_order(ward, lab)
    later = order_place(
        actor=physician, patient_id=ward.treated.pk, kind=Order.Kind.LAB, department=lab.department, description="CRP"
    )
    order_complete(actor=lab, order_id=later.pk)
    still_open = order_place(
        actor=physician, patient_id=ward.treated.pk, kind=Order.Kind.LAB, department=lab.department, description="Na"
    )
    order_complete(actor=radiology, order_id=ward.radiology_order.pk)  # radiology's, not the lab's
    second_lab = _other_lab(make_persona)
    theirs = order_place(
        actor=physician,
        patient_id=ward.treated.pk,
        kind=Order.Kind.LAB,
        department=second_lab.department,
        description="Mg",
    )
    order_complete(actor=second_lab, order_id=theirs.pk)

    response = client_for(lab).get(reverse("records:worklist_completed"))
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [r.order.id for r in rows] == [later.pk, ward.lab_order.pk]
    assert still_open.pk not in [r.order.id for r in rows]
    assert rows[0].completed_by == lab.get_full_name()
    assert rows[0].order.completed_at is not None
    html = response.content.decode()
    assert reverse("records:order_detail", args=[later.pk]) in html
    assert "Treatedsurname".upper() in html  # names the patient: it is in SHOWS_RECORD
    event = AccessEvent.objects.filter(actor_id=lab.pk, action="list").latest("pk")
    assert event.explanation == "order_history"


def test_completed_list_is_paged_with_a_constant_query_count(
    ward: Ward, lab: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(lab)

    def complete(n: int) -> None:
        for _ in range(n):
            order = order_place(
                actor=physician,
                patient_id=ward.treated.pk,
                kind=Order.Kind.LAB,
                department=lab.department,
                description="K",
            )
            order_complete(actor=lab, order_id=order.pk)

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    complete(2)
    queries(reverse("records:worklist_completed"))  # the first request of a session does more
    few = queries(reverse("records:worklist_completed"))
    complete(LIST_PER_PAGE + 3)
    assert queries(reverse("records:worklist_completed")) == few
    second = client.get(reverse("records:worklist_completed") + "?page=2")
    assert len(second.context["rows"]) == 5
    assert client.get(reverse("records:worklist_completed") + "?page=zzz").status_code == 200


def test_roles_without_a_worklist_get_403_for_the_completed_list(
    nurse: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    for user in (nurse, physician):
        assert client_for(user).get(reverse("records:worklist_completed")).status_code == 403


# --- A completed order, read-only ---------------------------------------------------------------------


def test_completed_order_answers_read_only_to_its_department(
    ward: Ward, lab: User, client_for: Callable[[User], Client]
) -> None:
    _complete_lab_order(ward, lab)
    response = client_for(lab).get(reverse("records:order_detail", args=[ward.lab_order.pk]))
    assert response.status_code == 200
    assert response.context["read_only"] is True
    html = response.content.decode()
    assert "Troponin T" in html
    assert 'data-testid="read-only"' in html
    # No way to add to it: no result, report, upload or completion form.
    for name in ("order_result", "order_report", "order_upload", "order_complete"):
        assert reverse(f"records:{name}", args=[ward.lab_order.pk]) not in html
    # Only that order's work: not the rest of the record.
    assert "Aspirin" not in html
    chart = response.context["chart"]
    assert chart.order_ids == (ward.lab_order.pk,)
    event = AccessEvent.objects.filter(actor_id=lab.pk, action="view").latest("pk")
    assert event.patient_id == ward.treated.pk
    assert event.explanation == "order_history"
    assert event.detail == {"order_id": ward.lab_order.pk}


def test_reading_back_a_completed_order_raises_no_order_alert(
    ward: Ward, lab: User, client_for: Callable[[User], Client]
) -> None:
    _complete_lab_order(ward, lab)
    assert client_for(lab).get(reverse("records:order_detail", args=[ward.lab_order.pk])).status_code == 200
    assert not Alert.objects.filter(rule="order_without_open_order").exists()


def test_completed_order_is_404_to_other_departments_and_kinds(
    ward: Ward,
    lab: User,
    radiology: User,
    make_persona: Callable[..., User],
    client_for: Callable[[User], Client],
) -> None:
    _complete_lab_order(ward, lab)
    url = reverse("records:order_detail", args=[ward.lab_order.pk])
    assert client_for(_other_lab(make_persona)).get(url).status_code == 404
    assert client_for(radiology).get(url).status_code == 404  # radiology: a lab order is not its work
    # The chart itself stays closed to the lab once its order is done.
    assert client_for(lab).get(reverse("records:chart", args=[ward.treated.pk])).status_code == 404


def test_completed_order_is_403_to_roles_without_a_worklist(
    ward: Ward, lab: User, nurse: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    _complete_lab_order(ward, lab)
    for user in (nurse, physician):
        assert client_for(user).get(reverse("records:order_detail", args=[ward.lab_order.pk])).status_code == 403


def test_a_cancelled_order_is_not_history(
    ward: Ward, lab: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    cancelled = order_place(
        actor=physician, patient_id=ward.treated.pk, kind=Order.Kind.LAB, department=lab.department, description="Ca"
    )
    client_for(physician).post(reverse("records:order_cancel", args=[ward.treated.pk, cancelled.pk]))
    assert Order.objects.get(pk=cancelled.pk).status == Order.Status.CANCELLED
    assert client_for(lab).get(reverse("records:order_detail", args=[cancelled.pk])).status_code == 404


# --- Downloads ------------------------------------------------------------------------------------


def _upload(
    ward: Ward, radiology: User, content_type: str, filename: str = "TREATEDSURNAME Tina chest.png"
) -> Attachment:
    return attachment_upload(
        actor=radiology,
        order_id=ward.radiology_order.pk,
        source=io.BytesIO(tiny_png(1)),
        filename=filename,
        content_type=content_type,
        max_bytes=1_000_000,
    )


@pytest.mark.parametrize(
    ("content_type", "word", "extension"),
    [
        ("application/pdf", "report", "pdf"),
        ("image/png", "image", "png"),
        ("image/jpeg", "image", "jpg"),
        ("application/dicom", "study", "dcm"),
    ],
)
def test_download_is_named_by_order_date_and_type_never_by_the_patient(
    ward: Ward,
    radiology: User,
    client_for: Callable[[User], Client],
    media: Path,
    content_type: str,
    word: str,
    extension: str,
) -> None:
    attachment = _upload(ward, radiology, content_type)
    response = client_for(radiology).get(reverse("records:attachment_download", args=[attachment.pk]))
    assert response.status_code == 200
    b"".join(response.streaming_content)  # type: ignore[attr-defined]
    day = timezone.localdate(attachment.uploaded_at).strftime("%Y%m%d")
    expected = f"{word}-{ward.radiology_order.pk}-{day}-{attachment.pk}.{extension}"
    assert response["Content-Disposition"] == f'attachment; filename="{expected}"'
    assert response["Content-Type"] == content_type
    header = response["Content-Disposition"].lower()
    for identifier in ("treatedsurname", "tina", "chest", ward.treated.mrn.lower()):
        assert identifier not in header


def test_every_accepted_upload_type_has_a_download_name() -> None:
    assert set(ALLOWED_SIGNATURES) <= set(DOWNLOAD_NAMES)


def test_download_names_are_plain_ascii_and_unknown_types_get_no_executable_extension() -> None:
    at = timezone.now()
    name = download_name(content_type="text/html", order_id=None, attachment_id=7, uploaded_at=at)
    assert name == f"file-{timezone.localdate(at):%Y%m%d}-7.bin"
    for content_type in DOWNLOAD_NAMES:
        assert re.fullmatch(
            r"[a-z]+-\d+-\d{8}-\d+\.[a-z]+",
            download_name(content_type=content_type, order_id=3, attachment_id=9, uploaded_at=at),
        )


def test_images_of_a_completed_order_stay_downloadable_to_its_department_only(
    ward: Ward,
    radiology: User,
    physician: User,
    make_persona: Callable[..., User],
    client_for: Callable[[User], Client],
    media: Path,
) -> None:
    attachment = _upload(ward, radiology, "image/png", filename="chest.png")
    order_complete(actor=radiology, order_id=ward.radiology_order.pk)
    url = reverse("records:attachment_download", args=[attachment.pk])
    response = client_for(radiology).get(url)
    assert response.status_code == 200
    b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert (
        AccessEvent.objects.filter(actor_id=radiology.pk, action="download").latest("pk").explanation == "order_history"
    )
    other = DepartmentFactory(code="rad-2", name="Second radiology", kind=Department.Kind.RADIOLOGY)
    stranger = UserFactory(username="rad_two", role=Role.RADIOLOGY, department=other)
    assert client_for(stranger).get(url).status_code == 404
    # The lab of the hospital never did this work: still a 404.
    assert client_for(make_persona(Role.LAB, username="lab_x")).get(url).status_code == 404


# --- The selectors themselves, for callers other than these views ---------------------------------


def test_history_selectors_refuse_roles_without_a_worklist(ward: Ward, lab: User, nurse: User) -> None:
    _complete_lab_order(ward, lab)
    with pytest.raises(AccessRefused) as refused:
        completed_orders(actor=nurse)
    assert refused.value.status == 403
    with pytest.raises(AccessRefused) as refused:
        completed_order_for_department(actor=nurse, order_id=ward.lab_order.pk)
    assert refused.value.status == 403


def test_a_lab_user_without_a_department_sees_no_history(ward: Ward, lab: User) -> None:
    _complete_lab_order(ward, lab)
    homeless = UserFactory(username="lab_nodept", role=Role.LAB, department=None)
    assert completed_orders(actor=homeless)[0] == []
    with pytest.raises(AccessRefused) as refused:
        completed_order_for_department(actor=homeless, order_id=ward.lab_order.pk)
    assert refused.value.status == 404
    assert not completed_by_department(homeless, ward.lab_order.pk, DataCategory.OBSERVATIONS)


def test_completed_by_department_opens_only_the_history_categories(ward: Ward, lab: User) -> None:
    _complete_lab_order(ward, lab)
    assert completed_by_department(lab, ward.lab_order.pk, DataCategory.OBSERVATIONS)
    # Medications were never the lab's business, completed order or not.
    assert not completed_by_department(lab, ward.lab_order.pk, DataCategory.MEDICATIONS)
    assert not completed_by_department(lab, None, DataCategory.OBSERVATIONS)
    assert not completed_by_department(lab, ward.radiology_order.pk, DataCategory.OBSERVATIONS)
