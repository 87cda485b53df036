"""Panels on the role dashboards at ``/``.

``accounts`` may not import the apps that own the data (imports point ``records -> accounts``), so
those apps register their panels here from their ``AppConfig.ready()``; the dashboard renders the
panels registered for the signed-in role, in registration order.

A panel that shows any of a patient's record (names, MRNs) is registered with ``shows_record``: when
the person's step-up is stale it is not built at all (nothing is read or recorded) and a
"confirm it is you" card stands in its place, as the pages behind ``step_up_required`` do.

A panel that reads patients' records returns a generator (a read in steps, records/selectors/access.py)
instead of its context: it yields each access before it decrypts anything. The dashboard hands them all
to the runner the records app registers (``run_panels_with``), which records one access event per
patient for the whole page, listing every section its panels showed of them, and only then lets the
panels go on. Without a runner such a panel is refused, never run unrecorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.urls import reverse

from accounts.roles import Role
from accounts.services import step_up_is_fresh

STEP_UP_PANEL = "accounts/panels/step_up.html"


# A panel's context: the dict itself, or a read in steps that yields its accesses and returns it.
PanelContext = dict[str, Any] | Generator[Any, None, dict[str, Any]]
# Runs the record panels' reads of one dashboard together and returns their contexts, in order.
PanelRunner = Callable[[list[Generator[Any, None, dict[str, Any]]]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Panel:
    template: str
    context: Callable[[HttpRequest], PanelContext]
    shows_record: bool = False
    title: str = ""


_PANELS: defaultdict[Role, list[Panel]] = defaultdict(list)
_RUNNER: list[PanelRunner] = []


def register_panel(
    roles: list[Role],
    template: str,
    context: Callable[[HttpRequest], PanelContext],
    *,
    shows_record: bool = False,
    title: str = "",
) -> None:
    """Show ``template`` (with ``context(request)`` as ``data``) on the dashboards of ``roles``.

    ``shows_record``: the panel shows patients' names or MRNs, so it needs a fresh step-up; ``title``
    heads the card that stands in for it until then.
    """
    for role in roles:
        if all(panel.template != template for panel in _PANELS[role]):
            _PANELS[role].append(Panel(template, context, shows_record, title))


def run_panels_with(runner: PanelRunner) -> None:
    """How the panels that read records are run together (the records app's ``run_together``)."""
    _RUNNER[:] = [runner]


def registered_panels(role: Role) -> tuple[Panel, ...]:
    """The panels registered for ``role``, in order (the load test's baseline builds the same ones)."""
    return tuple(_PANELS[role])


def step_up_panel(panel: Panel) -> dict[str, Any]:
    """The "confirm it is you" card that stands in for a record panel until a fresh step-up."""
    step_up_url = f"{reverse('accounts:step_up')}?{urlencode({'next': reverse('accounts:dashboard')})}"
    return {"template": STEP_UP_PANEL, "data": {"title": panel.title, "step_up_url": step_up_url}}


def panels_for(request: HttpRequest, role: Role) -> list[dict[str, Any]]:
    """The role's panels, built for this request; record panels only after a fresh step-up."""
    fresh = step_up_is_fresh(request)
    panels: list[dict[str, Any]] = []
    reads: dict[int, Generator[Any, None, dict[str, Any]]] = {}
    for panel in _PANELS[role]:
        if panel.shows_record and not fresh:
            panels.append(step_up_panel(panel))
            continue
        context = panel.context(request)
        if isinstance(context, Generator):
            reads[len(panels)] = context
            context = {}
        panels.append({"template": panel.template, "data": context})
    if reads:
        if not _RUNNER:
            for read in reads.values():
                read.close()
            raise ImproperlyConfigured("Dashboard panels read records, and no runner records their accesses.")
        for index, context in zip(reads, _RUNNER[0](list(reads.values())), strict=True):
            panels[index]["data"] = context
    return panels
