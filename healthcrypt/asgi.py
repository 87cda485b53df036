"""ASGI entry point. Refuses to start on unsafe configuration, like wsgi.py."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings")

application = get_asgi_application()

from healthcrypt.checks import refuse_unsafe_start  # noqa: E402  (needs the app registry)

refuse_unsafe_start()
