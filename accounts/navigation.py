"""The navigation bar: each entry names the capability that shows it (accounts/roles.py)."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from accounts.roles import Capability, has_capability


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    capability: Capability | None = None  # None: every signed-in user


# Later features add their entries here, each behind the capability that its views also require.
NAV_ITEMS: tuple[NavItem, ...] = (
    NavItem("Dashboard", "accounts:dashboard"),
    NavItem("My patients", "records:my_patients", Capability.VIEW_PATIENT_LIST),
    NavItem("Worklist", "records:worklist", Capability.VIEW_WORKLIST),
    NavItem("Find a patient", "records:search", Capability.SEARCH_PATIENTS),
    NavItem("Emergency access", "records:emergency", Capability.BREAK_GLASS),
    NavItem("Register", "records:register", Capability.REGISTER_PATIENT),
    NavItem("My record", "records:my_record", Capability.VIEW_OWN_RECORD),
    NavItem("Alerts", "security:alerts", Capability.REVIEW_ALERTS),
    NavItem("Security reports", "security:reports", Capability.REVIEW_ALERTS),
    NavItem("Lockouts", "accounts:lockouts", Capability.MANAGE_LOCKOUTS),
    NavItem("Datasets", "research:requests", Capability.REQUEST_DATASET),
    NavItem("Dataset requests", "research:review", Capability.APPROVE_DATASET),
    NavItem("Compliance admin", "admin:index", Capability.ADMIN_SITE),
    NavItem("Password", "accounts:password_change"),
)


def items_for(user: object) -> list[dict[str, str]]:
    """The entries a user may use, resolved to URLs; empty for anonymous users."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [
        {"label": item.label, "url": reverse(item.url_name)}
        for item in NAV_ITEMS
        if item.capability is None or has_capability(user, item.capability)
    ]
