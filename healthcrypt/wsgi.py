"""WSGI entry point (gunicorn healthcrypt.wsgi). Refuses to start on unsafe configuration."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings")

application = get_wsgi_application()

from healthcrypt.checks import refuse_unsafe_start  # noqa: E402  (needs the app registry)

refuse_unsafe_start()
