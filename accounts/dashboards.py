"""Panels on the role dashboards at ``/``.

``accounts`` may not import the apps that own the data (imports point ``records -> accounts``), so
those apps register their panels here from their ``AppConfig.ready()``; the dashboard renders the
panels registered for the signed-in role, in registration order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from accounts.roles import Role


@dataclass(frozen=True)
class Panel:
    template: str
    context: Callable[[HttpRequest], dict[str, Any]]


_PANELS: defaultdict[Role, list[Panel]] = defaultdict(list)


def register_panel(roles: list[Role], template: str, context: Callable[[HttpRequest], dict[str, Any]]) -> None:
    """Show ``template`` (with ``context(request)`` as ``data``) on the dashboards of ``roles``."""
    for role in roles:
        if all(panel.template != template for panel in _PANELS[role]):
            _PANELS[role].append(Panel(template, context))


def panels_for(request: HttpRequest, role: Role) -> list[dict[str, Any]]:
    return [{"template": panel.template, "data": panel.context(request)} for panel in _PANELS[role]]
