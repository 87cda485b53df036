"""An attachment id tells a role that may not see it nothing: the same 404 whether it exists or not."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from accounts.roles import Role
from audit.models import AccessEvent
from records.demo_clinical import tiny_png
from records.models import Attachment
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


@pytest.fixture
def attachment(
    ward: Ward, radiology: User, client_for: Callable[[User], Client], tmp_path: Path
) -> Iterator[Attachment]:
    with override_settings(MEDIA_ROOT=tmp_path):
        upload = SimpleUploadedFile("scan.png", tiny_png(7), content_type="image/png")
        response = client_for(radiology).post(
            reverse("records:order_upload", args=[ward.radiology_order.pk]), {"file": upload, "description": "PA"}
        )
        assert response.status_code == 302
        yield Attachment.objects.get()


@pytest.mark.parametrize("role", [Role.COMPLIANCE, Role.SECURITY, Role.RESEARCHER, Role.FRONT_DESK, Role.LAB, Role.EMS])
def test_existing_and_missing_attachments_get_the_same_404(
    role: Role, attachment: Attachment, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    user = User.objects.filter(role=role).first() or make_persona(role)
    client = client_for(user)
    existing = client.get(reverse("records:attachment_download", args=[attachment.pk]))
    missing = client.get(reverse("records:attachment_download", args=[attachment.pk + 1000]))
    assert (existing.status_code, missing.status_code) == (404, 404)
    # The same page (its per-request token and nonce aside).
    assert (existing.context["title"], existing.context["message"]) == (
        missing.context["title"],
        missing.context["message"],
    )
    assert not AccessEvent.objects.filter(actor_id=user.pk).exists()


def test_the_treating_physician_still_downloads_it(
    attachment: Attachment, physician: User, client_for: Callable[[User], Client], tmp_path: Path
) -> None:
    with override_settings(MEDIA_ROOT=tmp_path):
        response = client_for(physician).get(reverse("records:attachment_download", args=[attachment.pk]))
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == tiny_png(7)
