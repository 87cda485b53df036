"""The researcher's download: single use, expiring, theirs only, a disclosure recorded before a byte
is served, a zip of exactly the files the build recorded, no patient data in the URL or file name."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role
from accounts.signals import AuthEvent
from audit.models import AccessEvent, AuthEventRecord
from records.selectors import AccessNotRecorded
from research import downloads
from research.downloads import DownloadRefused, dataset_dir, download_grant_issue, download_open, token_hash
from research.models import DownloadGrant

pytestmark = pytest.mark.django_db


@pytest.fixture
def built(population, approved, compliance, settings, tmp_path):
    settings.RESEARCH_DATASETS_DIR = tmp_path / "datasets"
    population(6)
    request = approved()
    call_command("deid_export", "--request", str(request.pk), "--actor", compliance.username)
    return request


def prepare(client, request):
    response = client.post(reverse("research:download_prepare", args=[request.pk]))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert f'action="{reverse("research:download")}"' in page
    match = re.search(r'name="token" value="([A-Za-z0-9_-]{40,})"', page)
    assert match
    return match.group(1)


def downloads_recorded():
    ids = [e.pk for e in AccessEvent.objects.filter(action="disclose") if "download" in e.detail["recipient"]]
    return AccessEvent.objects.filter(pk__in=ids)


def fetch(client, token):
    return client.post(reverse("research:download"), {"token": token})


def refusals():
    return AuthEventRecord.objects.filter(event=AuthEvent.RESEARCH_DOWNLOAD_REFUSED)


def test_deid_export_writes_under_the_datasets_directory_by_request(built):
    assert (dataset_dir(built.pk) / "dataset.csv").is_file()
    assert dataset_dir(built.pk).name == f"request-{built.pk}"


def test_the_request_page_shows_the_privacy_report_and_a_download(built, researcher, client_for):
    page = client_for(researcher).get(reverse("research:request", args=[built.pk])).content.decode()
    assert 'data-testid="privacy-report"' in page
    assert "k reached" in page
    assert reverse("research:download_prepare", args=[built.pk]) in page


def test_the_researcher_downloads_the_files_once(built, researcher, client_for):
    client = client_for(researcher)
    token = prepare(client, built)
    response = fetch(client, token)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "no-store" in response["Cache-Control"]
    assert re.fullmatch(
        rf'attachment; filename="dataset-{built.pk}-[0-9a-f]{{8}}\.zip"', response["Content-Disposition"]
    )
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    dataset = built.datasets.get()
    assert sorted(archive.namelist()) == sorted(f["name"] for f in dataset.files)
    assert archive.read("dataset.csv") == (dataset_dir(built.pk) / "dataset.csv").read_bytes()
    event = downloads_recorded().get()
    assert event.actor_id == researcher.pk
    assert event.patient_id is None
    assert event.purpose == "research"
    assert f"research request {built.pk}" in event.detail["recipient"]
    grant = DownloadGrant.objects.get()
    assert grant.used_at is not None

    again = fetch(client, token)
    assert again.status_code == 404
    assert not isinstance(again, type(response))
    assert downloads_recorded().count() == 1
    refusal = refusals().get()
    assert refusal.detail == {"reason": "used", "grant": grant.pk}
    assert refusal.actor_id == researcher.pk


def test_only_the_hash_of_the_token_is_stored(built, researcher):
    token = download_grant_issue(actor=researcher, request_id=built.pk)
    grant = DownloadGrant.objects.get()
    assert grant.token_hash == token_hash(token) != token
    assert len(token) >= 40


def test_an_expired_link_serves_nothing(built, researcher, client_for):
    client = client_for(researcher)
    token = prepare(client, built)
    past = timezone.now() - timedelta(hours=2)
    DownloadGrant.objects.update(created_at=past, expires_at=past + timedelta(hours=1))
    assert fetch(client, token).status_code == 404
    assert not downloads_recorded().exists()
    assert refusals().get().detail["reason"] == "expired"
    assert DownloadGrant.objects.get().used_at is None


def test_the_link_expires_after_the_configured_minutes(built, researcher, settings):
    settings.RESEARCH_DOWNLOAD_MINUTES = 15
    download_grant_issue(actor=researcher, request_id=built.pk)
    grant = DownloadGrant.objects.get()
    assert grant.expires_at - grant.created_at == timedelta(minutes=15)


def test_another_researchers_link_serves_nothing(built, researcher, make_persona, client_for):
    token = prepare(client_for(researcher), built)
    other = make_persona(Role.RESEARCHER, username="other-researcher")
    assert fetch(client_for(other), token).status_code == 404
    assert refusals().get().detail["reason"] == "not_yours"
    assert DownloadGrant.objects.get().used_at is None
    # The owner can still use it.
    assert fetch(client_for(researcher), token).status_code == 200


def test_another_researcher_cannot_prepare_a_download_or_see_the_request(built, make_persona, client_for):
    other = client_for(make_persona(Role.RESEARCHER, username="other-researcher"))
    assert other.post(reverse("research:download_prepare", args=[built.pk])).status_code == 404
    assert other.get(reverse("research:request", args=[built.pk])).status_code == 404
    assert not DownloadGrant.objects.exists()


@pytest.mark.parametrize("role", [Role.COMPLIANCE, Role.PHYSICIAN, Role.SECURITY])
def test_other_roles_get_403_on_the_download(built, researcher, make_persona, client_for, role):
    token = prepare(client_for(researcher), built)
    client = client_for(User.objects.filter(role=role).first() or make_persona(role))
    assert fetch(client, token).status_code == 403
    assert client.post(reverse("research:download_prepare", args=[built.pk])).status_code == 403
    assert DownloadGrant.objects.get().used_at is None


def test_an_unknown_token_is_refused_and_recorded(researcher, client_for):
    assert fetch(client_for(researcher), "x" * 43).status_code == 404
    assert refusals().get().detail == {"reason": "unknown"}


def test_a_request_not_built_has_no_download(researcher, client_for, approved):
    request = approved()
    client = client_for(researcher)
    assert client.post(reverse("research:download_prepare", args=[request.pk])).status_code == 404
    assert client.get(reverse("research:download_prepare", args=[request.pk])).status_code == 405


def test_files_changed_on_disk_are_not_served(built, researcher, client_for):
    client = client_for(researcher)
    token = prepare(client, built)
    (dataset_dir(built.pk) / "dataset.csv").write_bytes(b"x" * (dataset_dir(built.pk) / "dataset.csv").stat().st_size)
    assert fetch(client, token).status_code == 404
    assert refusals().get().detail["reason"] == "files_changed"
    assert not downloads_recorded().exists()


def test_files_written_elsewhere_with_out_are_not_offered(
    population, approved, compliance, researcher, client_for, settings, tmp_path
):
    settings.RESEARCH_DATASETS_DIR = tmp_path / "datasets"
    population(6)
    request = approved()
    call_command(
        "deid_export",
        "--request",
        str(request.pk),
        "--out",
        str(tmp_path / "elsewhere"),
        "--actor",
        compliance.username,
    )
    client = client_for(researcher)
    page = client.get(reverse("research:request", args=[request.pk])).content.decode()
    assert "not available for download" in page
    assert client.post(reverse("research:download_prepare", args=[request.pk])).status_code == 404


def test_the_disclosure_is_recorded_before_the_file_is_handed_out(built, researcher, monkeypatch):
    token = download_grant_issue(actor=researcher, request_id=built.pk)
    order = []
    real_archive = downloads._archive

    def archive(dataset):
        order.append("archive built")
        return real_archive(dataset)

    def record(**kwargs):
        order.append("disclosure recorded")
        raise AccessNotRecorded

    monkeypatch.setattr(downloads, "_archive", archive)
    monkeypatch.setattr(downloads, "research_download_record", record)
    with pytest.raises(AccessNotRecorded):
        download_open(actor=researcher, token=token)
    assert order == ["archive built", "disclosure recorded"]
    # Not recorded: nothing is handed out, and the link is still unused.
    assert DownloadGrant.objects.get().used_at is None


def test_a_disclosure_that_cannot_be_written_serves_nothing_through_the_view(
    built, researcher, client_for, monkeypatch
):
    client = client_for(researcher)
    token = prepare(client, built)

    def fail(**kwargs):
        raise AccessNotRecorded

    monkeypatch.setattr(downloads, "research_download_record", fail)
    client.raise_request_exception = False
    response = fetch(client, token)
    assert response.status_code == 503
    assert not hasattr(response, "streaming_content") or response.status_code != 200
    assert DownloadGrant.objects.get().used_at is None


def test_a_spent_token_cannot_be_spent_twice_even_when_read_before_the_first_use(built, researcher, monkeypatch):
    """Two requests read the unused grant at once; the conditional UPDATE lets only one through."""
    token = download_grant_issue(actor=researcher, request_id=built.pk)
    real_archive = downloads._archive

    def archive_then_race(dataset):
        result = real_archive(dataset)
        DownloadGrant.objects.update(used_at=timezone.now())  # the other request won meanwhile
        return result

    monkeypatch.setattr(downloads, "_archive", archive_then_race)
    with pytest.raises(DownloadRefused, match="used"):
        download_open(actor=researcher, token=token)
    assert not downloads_recorded().exists()


def test_no_patient_data_in_the_urls_file_name_or_logs(built, researcher, client_for, caplog):
    client = client_for(researcher)
    with caplog.at_level(logging.DEBUG):
        token = prepare(client, built)
        response = fetch(client, token)
        body = b"".join(response.streaming_content)
        fetch(client, token)
    assert body
    text = " ".join([response["Content-Disposition"], caplog.text])
    for identifier in ("Zelda", "Quixote", "MRN7", "617-555", "Elm Street", "example.org", "02139"):
        assert identifier not in text
    assert token not in caplog.text


def test_the_download_needs_csrf(built, researcher):
    from django.test import Client

    from tests.conftest import sign_in

    token = download_grant_issue(actor=researcher, request_id=built.pk)
    client = sign_in(Client(enforce_csrf_checks=True), researcher)
    assert fetch(client, token).status_code == 403
    assert DownloadGrant.objects.get().used_at is None
    assert not downloads_recorded().exists()
