from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from accounts.navigation import items_for


def navigation(request: HttpRequest) -> dict[str, object]:
    """Adds the role-filtered navigation and the hospital's name to every template."""
    return {"nav_items": items_for(request.user), "hospital_name": settings.HOSPITAL_NAME}
