"""The researcher's single-use, expiring download of a built dataset (issue 13).

1. ``download_grant_issue``: the request's own researcher asks; a random token is made, only its
   SHA-256 is stored (``DownloadGrant``), with an expiry of ``RESEARCH_DOWNLOAD_MINUTES``. The token
   is shown once, in the page that answers the POST.
2. ``download_open``: the token's grant must exist, belong to this researcher, be unused and
   unexpired; otherwise ``DownloadRefused`` (the view answers 404 and records the refusal as an
   authentication event, reason and ids only). The dataset's files are read from
   ``RESEARCH_DATASETS_DIR/request-<id>/`` into a zip, each file checked against the SHA-256 the
   build recorded. Then, in one transaction, the grant is spent by a conditional UPDATE (so two
   requests with one token cannot both get it) and the disclosure to the researcher is recorded;
   only then is the file handed back to be streamed. If the disclosure cannot be recorded the grant
   stays unused and nothing is served.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts.roles import Capability, has_capability
from records.selectors.research import research_download_record
from research.models import Dataset, DatasetRequest, DownloadGrant
from research.services import RequestNotFound

TOKEN_BYTES = 32
_CHUNK = 1024 * 1024


class DownloadRefused(Exception):
    """The token cannot be used (``reason``: unknown, not_yours, used, expired, files_missing, files_changed)."""

    def __init__(self, reason: str, grant_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.grant_id = grant_id


@dataclass
class Download:
    """An archive ready to stream: an open temporary file (positioned at its start) and its name."""

    file: IO[bytes]
    filename: str
    dataset_id: int


def dataset_dir(request_id: int) -> Path:
    """Where ``deid_export`` writes a request's files when no --out is given, and where the download reads them."""
    return Path(settings.RESEARCH_DATASETS_DIR) / f"request-{request_id}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def files_present(dataset: Dataset) -> bool:
    """Are all of the dataset's recorded files in the datasets directory (sizes as recorded)?"""
    base = dataset_dir(dataset.request_id)
    for entry in dataset.files:
        path = base / str(entry["name"])
        if not path.is_file() or path.stat().st_size != int(entry["bytes"]):
            return False
    return True


def download_grant_issue(*, actor: Any, request_id: int) -> str:
    """A new single-use token for the newest dataset of the actor's own built request.

    ``PermissionDenied`` for a role that does not request datasets; ``RequestNotFound`` for a request
    that is not the actor's, not built, or whose files are not in the datasets directory.
    """
    if not has_capability(actor, Capability.REQUEST_DATASET):
        raise PermissionDenied("Your role does not allow this.")
    dataset = (
        Dataset.objects.filter(
            request_id=request_id, request__researcher=actor, request__status=DatasetRequest.Status.BUILT
        )
        .order_by("-built_at", "-id")
        .first()
    )
    if dataset is None or not files_present(dataset):
        raise RequestNotFound
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = timezone.now()
    DownloadGrant.objects.create(
        dataset=dataset,
        researcher=actor,
        token_hash=token_hash(token),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.RESEARCH_DOWNLOAD_MINUTES),
    )
    return token


def _archive(dataset: Dataset) -> IO[bytes]:
    """The dataset's files in a zip (a temporary file, deleted when closed), each checked against its digest."""
    base = dataset_dir(dataset.request_id)
    out = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the response that streams it)
    try:
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for entry in dataset.files:
                name = Path(str(entry["name"])).name
                digest = hashlib.sha256()
                try:
                    with (base / name).open("rb") as source, archive.open(name, "w") as target:
                        while chunk := source.read(_CHUNK):
                            digest.update(chunk)
                            target.write(chunk)
                except FileNotFoundError:
                    raise DownloadRefused("files_missing") from None
                if not secrets.compare_digest(digest.hexdigest(), str(entry["sha256"])):
                    raise DownloadRefused("files_changed")
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


def download_open(*, actor: Any, token: str) -> Download:
    """Spend the token and return the archive to stream; the disclosure is recorded first (module doc)."""
    now = timezone.now()
    grant = DownloadGrant.objects.select_related("dataset").filter(token_hash=token_hash(token)).first()
    if grant is None:
        raise DownloadRefused("unknown")
    if grant.researcher_id != getattr(actor, "pk", None) or not has_capability(actor, Capability.REQUEST_DATASET):
        raise DownloadRefused("not_yours", grant.pk)
    if grant.used_at is not None:
        raise DownloadRefused("used", grant.pk)
    if grant.expires_at <= now:
        raise DownloadRefused("expired", grant.pk)
    dataset = grant.dataset
    try:
        archive = _archive(dataset)
    except DownloadRefused as exc:
        raise DownloadRefused(exc.reason, grant.pk) from None
    try:
        with transaction.atomic():
            spent = DownloadGrant.objects.filter(pk=grant.pk, used_at__isnull=True, expires_at__gt=now).update(
                used_at=now
            )
            if spent != 1:
                raise DownloadRefused("used", grant.pk)
            research_download_record(actor=actor, request_ref=dataset.request_id, dataset_ref=dataset.pk)
    except BaseException:
        archive.close()
        raise
    filename = f"dataset-{dataset.request_id}-{secrets.token_hex(4)}.zip"
    return Download(file=archive, filename=filename, dataset_id=dataset.pk)
