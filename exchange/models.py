"""What the exchange app keeps of its own: messages received from other systems, and the directory of
outside practitioners and organisations.

An HL7 v2 message names a patient and states findings, so the raw text is an encrypted field bound
to its row (healthcrypt/fields.py). What stays in plaintext, on purpose: the sending system and
the message's control id (the duplicate check looks them up), the message type and version, the
outcome and the ACK code, a keyed digest of the message (tells a retransmission from a different
message reusing a control id without revealing the text), and the error text, which the code
writes from fixed sentences that never quote a value of the message.

Imported FHIR bundles name the clinicians and providers who saw a patient elsewhere (Practitioner and
Organization). They are not patients, and a directory entry holds no patient data, so it stays in
plaintext; patient bundles point to entries by ``urn:uuid:`` or by conditional reference
(``Organization?identifier=system|value``), which ``identifier_system``/``identifier_value`` answer.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from exchange.partners.models import AccessToken, DataSharing, Partner
from healthcrypt.fields import RowIdentity, encrypt
from records.models import Patient

# The partner registry lives in exchange/partners/models.py; Django finds its models through here.
__all__ = ["AccessToken", "DataSharing", "DirectoryEntry", "HL7Message", "Package", "Partner"]


class HL7Message(RowIdentity):
    """One HL7 v2 message as received (from a file or over MLLP) and how it was answered."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (AA)"
        DUPLICATE = "duplicate", "Duplicate of an accepted message (AA, not processed again)"
        ERROR = "error", "Error (AE)"
        REJECTED = "rejected", "Rejected (AR)"

    class Channel(models.TextChoices):
        FILE = "file", "File (ingest_hl7)"
        MLLP = "mllp", "MLLP listener (hl7_listen)"

    raw = encrypt(models.TextField())
    # Keyed (blind-index) digest of the raw text: same control id + same digest is a retransmission.
    digest = models.CharField(max_length=64, editable=False)
    # MSH-3 and MSH-4 (first components), joined by "|": the sending application and facility.
    sender = models.CharField(max_length=200, blank=True)
    control_id = models.CharField("control id (MSH-10)", max_length=200, blank=True)
    message_type = models.CharField("type (MSH-9)", max_length=40, blank=True)
    version = models.CharField("version (MSH-12)", max_length=20, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=20, choices=Status.choices)
    ack_code = models.CharField(max_length=2)
    # Why a message was not accepted: fixed text naming segments and fields, never their values.
    error = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField()

    class Meta:
        verbose_name = "HL7 message"
        indexes = [models.Index(fields=["sender", "control_id"]), models.Index(fields=["received_at"])]
        constraints = [
            # One accepted message per sender and control id: a retransmission racing the original
            # fails on this and is answered as a duplicate.
            models.UniqueConstraint(
                fields=["sender", "control_id"],
                condition=Q(status="accepted"),
                name="exchange_hl7_one_accepted_per_control_id",
            ),
        ]

    def __str__(self) -> str:
        return f"HL7 message #{self.pk}"


class DirectoryEntry(models.Model):
    class Kind(models.TextChoices):
        PRACTITIONER = "Practitioner", "Practitioner"
        ORGANIZATION = "Organization", "Organization"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The FHIR resource id in the source system.
    source_id = models.CharField(max_length=64)
    identifier_system = models.CharField(max_length=255, blank=True)
    identifier_value = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "directory entries"
        constraints = [models.UniqueConstraint(fields=["kind", "source_id"], name="exchange_directory_unique_source")]
        indexes = [models.Index(fields=["kind", "identifier_system", "identifier_value"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class Package(models.Model):
    """A signed and encrypted package sent to or received from a partner (exchange/packages.py).

    What ONC 170.315(d)(8) asks to keep: the SHA-256 digest of the bundle it carried, beside the
    package's id (``jti``-like, unique per direction: a received id seen again is a replay), who it
    went to or came from, when it was issued and until when it is valid, and the key that signed it.
    No patient data in plaintext: the bundle is not kept here, only a link to the patient.
    """

    class Direction(models.TextChoices):
        OUT = "out", "Sent to the partner"
        IN = "in", "Received from the partner"

    package_id = models.UUIDField("package id")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="packages")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Hex SHA-256 of the bundle's canonical JSON (sorted keys, no spaces, UTF-8).
    digest = models.CharField("SHA-256 of the bundle", max_length=64)
    signing_kid = models.CharField("signing key id", max_length=200)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A package is opened once: the second import of the same id fails here even in a race.
            models.UniqueConstraint(fields=["direction", "package_id"], name="exchange_package_once"),
            models.CheckConstraint(condition=Q(direction__in=["out", "in"]), name="exchange_package_direction"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("issued_at")), name="exchange_package_period"),
        ]
        indexes = [models.Index(fields=["partner", "created_at"])]

    def __str__(self) -> str:
        return f"Package {self.package_id} ({self.direction})"
