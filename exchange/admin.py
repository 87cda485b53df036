"""The partner registry in the admin, for compliance (DESIGN.md §3): register and suspend partners,
upload their public keys, share patients or departments with them, see and revoke tokens; and, read
only, the packages sent and received and the HL7 interface's message log (metadata, never a message).

Who: the ``manage_partners`` capability of the role table (compliance only); operators may enter
the admin but not this section. Every change is in the change history (django-auditlog, the token
hash left out); suspensions, reactivations and revocations are also auth events.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from accounts.roles import Capability, has_capability
from exchange.models import HL7Message, Package
from exchange.partners.models import AccessToken, DataSharing, Partner
from exchange.partners.services import partner_keys_changed, partner_status_change, token_revoke


def can_manage_partners(request: HttpRequest) -> bool:
    return has_capability(request.user, Capability.MANAGE_PARTNERS)


class PartnerRegistryAdmin(admin.ModelAdmin[Any]):
    """The role table decides, not Django's model permissions."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_manage_partners(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_manage_partners(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return can_manage_partners(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_manage_partners(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Partners, sharings and tokens are history: suspend, end or revoke instead.
        return False


@admin.register(Partner)
class PartnerAdmin(PartnerRegistryAdmin):
    list_display = ("name", "client_id", "status", "rate_limit_per_minute", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "client_id")
    readonly_fields = ("status", "created_by", "created_at", "updated_at")
    fields = ("name", "client_id", "status", "allowed_scopes", "rate_limit_per_minute", "jwks", *readonly_fields[1:])
    actions = ["suspend", "reactivate"]

    def save_model(self, request: HttpRequest, obj: Partner, form: ModelForm[Partner], change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        before = Partner.objects.filter(pk=obj.pk).values_list("jwks", flat=True).first() if change else None
        super().save_model(request, obj, form, change)
        if change and "jwks" in form.changed_data:
            revoked = partner_keys_changed(actor=request.user, partner=obj, before=before, request=request)
            if revoked:
                self.message_user(request, f"A registered key was withdrawn: {revoked} live token(s) revoked.")

    @admin.action(description="Suspend (its tokens are revoked and no new ones are issued)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        changed = sum(
            partner_status_change(actor=request.user, partner=p, status=Partner.Status.SUSPENDED, request=request)
            for p in queryset
        )
        self.message_user(request, f"{changed} partner(s) suspended.")

    @admin.action(description="Reactivate")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        changed = sum(
            partner_status_change(actor=request.user, partner=p, status=Partner.Status.ACTIVE, request=request)
            for p in queryset
        )
        self.message_user(request, f"{changed} partner(s) reactivated.")


@admin.register(DataSharing)
class DataSharingAdmin(PartnerRegistryAdmin):
    list_display = ("partner", "patient_id", "department", "purpose", "active_from", "active_until")
    list_filter = ("purpose", "partner")
    # A patient is chosen by id: a drop-down would list (and decrypt) every patient's name.
    raw_id_fields = ("patient",)
    readonly_fields = ("created_by", "created_at")

    def save_model(self, request: HttpRequest, obj: DataSharing, form: ModelForm[DataSharing], change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


@admin.register(AccessToken)
class AccessTokenAdmin(PartnerRegistryAdmin):
    list_display = ("hash_prefix", "partner", "issued_at", "expires_at", "revoked_at", "scope_list")
    list_filter = ("partner",)
    fields = ("partner", "hash_prefix", "scope_list", "issued_at", "expires_at", "revoked_at", "assertion_jti")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens come from the token endpoint only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke is an action; nothing else about a token changes

    @admin.display(description="token (hash prefix)")
    def hash_prefix(self, obj: AccessToken) -> str:
        return obj.hash_prefix

    @admin.display(description="scopes")
    def scope_list(self, obj: AccessToken) -> str:
        return " ".join(obj.scopes)

    @admin.action(description="Revoke")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> None:
        if not can_manage_partners(request):
            return
        count = token_revoke(actor=request.user, tokens=list(queryset), request=request)
        self.message_user(request, f"{count} token(s) revoked.")


@admin.register(Package)
class PackageAdmin(PartnerRegistryAdmin):
    """Packages sent and received (exchange/packages.py): the record ONC 170.315(d)(8) asks for, read-only.
    The patient link is left out: compliance sees no clinical data (DESIGN.md §3)."""

    list_display = ("package_id", "direction", "partner", "digest", "issued_at", "expires_at", "created_at")
    list_filter = ("direction", "partner")
    search_fields = ("package_id", "digest")
    fields = ("package_id", "direction", "partner", "digest", "signing_kid", "issued_at", "expires_at", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # packages come from seal_package and import_package only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(HL7Message)
class HL7MessageAdmin(PartnerRegistryAdmin):
    """The HL7 v2 interface's log (exchange/hl7/): what each message was and how it was answered, to
    answer an interface engine's team ("why was control id X an AE?"). Read-only, and the message
    itself (``raw``, encrypted) and its digest are never shown: compliance sees no clinical data."""

    list_display = ("received_at", "sender", "control_id", "message_type", "version", "channel", "ack_code", "error")
    list_filter = ("status", "ack_code", "channel", "message_type", "version")
    search_fields = ("control_id", "sender")
    date_hierarchy = "received_at"
    ordering = ("-received_at", "-id")
    show_full_result_count = False  # the log grows by every message: no second COUNT per page
    fields = (
        "sender",
        "control_id",
        "message_type",
        "version",
        "channel",
        "status",
        "ack_code",
        "error",
        "received_at",
        "processed_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages come from ingest_hl7 and hl7_listen only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
