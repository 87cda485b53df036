"""Who may read and export the audit trail, from the role table (accounts/roles.py), never model permissions.

Django's model permissions are per model and per user, granted by whoever can edit users; the role
table is the one place that says what a role does (DESIGN.md §3), so the audit admin asks it.
"""

from __future__ import annotations

from typing import Any

from accounts.roles import Capability, has_capability


def can_view_audit(user: Any) -> bool:
    """True for roles with ``view_audit`` (compliance, security) and for active operators (superusers).

    Operators hold no role, hence no ``view_audit``; they still see the trail because break-fix work
    (a failed migration, a key rotation) needs it, and their own reads of it are audited like anyone's.
    Security analysts have ``view_audit`` but not ``admin_site``, so the admin site itself keeps them out.
    """
    if has_capability(user, Capability.VIEW_AUDIT):
        return True
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_active", False) and user.is_superuser)


def can_export_audit(user: Any) -> bool:
    """True only for roles with ``export_audit`` (compliance officers). Operators may look, not export:
    an export is a bulk disclosure of who treated whom, which is compliance work, not operations."""
    return has_capability(user, Capability.EXPORT_AUDIT)
