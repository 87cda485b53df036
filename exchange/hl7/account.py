"""The interface service account that HL7 messages are written as (``HL7_INTERFACE_USERNAME`` or ``--actor``)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.models import User
from accounts.roles import Role


class InterfaceAccountError(Exception):
    """The named account is missing or is not an interface account; the message says which."""


def interface_account(username: str = "") -> User:
    """The interface account called ``username`` (default: the setting), checked before any message is read.

    The write path checks it again on every write (records.services.interface_account_check).
    """
    name = username or settings.HL7_INTERFACE_USERNAME
    user = User.objects.filter(username=name).first()
    if user is None:
        raise InterfaceAccountError(
            f"No account named {name!r}: create it with --create-account, or name another with --actor."
        )
    if not user.is_active or user.is_superuser or user.has_usable_password():
        raise InterfaceAccountError(
            f"The account {name!r} is not an interface account: it must be active, not a superuser, "
            "and have no usable password (nobody may sign in as it)."
        )
    return user


@transaction.atomic
def interface_account_create(username: str = "") -> tuple[User, bool]:
    """Create the interface account if it does not exist; returns it and whether it was created.

    Every account carries a role (accounts_user_role_required). The interface's is ``front_desk``:
    registration and admission are that role's work, it never opens clinical data, and the account
    cannot sign in anyway (no password, no second factor). What the feed may write is decided by
    the interface services, which accept only such an account, not by the role.
    """
    name = username or settings.HL7_INTERFACE_USERNAME
    existing = User.objects.filter(username=name).first()
    if existing is not None:
        return existing, False
    user = User(username=name, role=Role.FRONT_DESK, first_name="HL7", last_name="interface")
    user.set_unusable_password()
    user.full_clean()
    user.save()
    return user, True
