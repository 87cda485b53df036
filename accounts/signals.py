"""Authentication and privilege events, for the audit trail (DESIGN.md §6).

``auth_event`` is sent with ``Signal.send()`` (never ``send_robust``) so that a failing receiver
fails the action. Keyword arguments: ``event`` (AuthEvent), ``actor`` (the user acting, or None),
``target`` (the user acted upon, or None), ``username`` (the name given, for failures of unknown
accounts), ``ip`` and ``user_agent`` (from the request), ``detail`` (a small dict, never secrets).
"""

from __future__ import annotations

from enum import StrEnum

from django.dispatch import Signal


class AuthEvent(StrEnum):
    LOGIN = "login"
    LOGOUT = "logout"
    IDLE_LOGOUT = "idle_logout"
    LOGIN_FAILED = "login_failed"
    OTP_FAILED = "otp_failed"
    LOCKOUT = "lockout"
    LOCKOUT_CLEARED = "lockout_cleared"
    OTP_ENROLLED = "otp_enrolled"
    OTP_RESET = "otp_reset"
    RECOVERY_CODE_USED = "recovery_code_used"
    STEP_UP = "step_up"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an event name)
    ROLE_CHANGED = "role_changed"
    ACCOUNT_CREATED = "account_created"
    ACCOUNT_DEACTIVATED = "account_deactivated"
    ACCOUNT_REACTIVATED = "account_reactivated"
    # The partner API (exchange/api): tokens issued and refused, bearer tokens refused, revocations.
    PARTNER_TOKEN_ISSUED = "partner_token_issued"  # noqa: S105 (an event name)
    PARTNER_TOKEN_REFUSED = "partner_token_refused"  # noqa: S105 (an event name)
    PARTNER_TOKEN_REVOKED = "partner_token_revoked"  # noqa: S105 (an event name)
    PARTNER_API_REFUSED = "partner_api_refused"
    PARTNER_SUSPENDED = "partner_suspended"
    PARTNER_REACTIVATED = "partner_reactivated"
    # Research datasets (research/downloads.py): a download link that was used, expired, another's or unknown.
    RESEARCH_DOWNLOAD_REFUSED = "research_download_refused"


auth_event = Signal()
