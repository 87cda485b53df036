"""Audit trail models arrive with the audit issue (DESIGN.md §6)."""

from __future__ import annotations
