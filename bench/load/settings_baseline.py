"""Bench-only settings: the production settings plus the load test's plaintext baseline pages.

The baseline serves the chart, search, dashboard, vitals and result pages from plaintext mirror rows
with no policy check and no audit (bench/load/baseline/), so that the load test can measure what the
security stack costs. It must never run on real data:

- it is switched on only here, in Python, after the real settings are read; ``healthcrypt.settings``
  refuses to start when ``HEALTHCRYPT_BENCH_BASELINE`` is set in the environment, so no deployment
  can turn it on with a variable (tests/bench/test_baseline_settings.py);
- it refuses any database whose name is not a bench database (``hc_load_*``, or a test database).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from healthcrypt.settings import *  # noqa: F403
from healthcrypt.settings import DATABASES, INSTALLED_APPS

BENCH_BASELINE = True

_name = str(DATABASES["default"]["NAME"])
if not _name.startswith(("hc_load_", "test_hc_load_")):
    raise ImproperlyConfigured("The bench baseline runs only on a bench database (hc_load_*), never on real data.")

INSTALLED_APPS = [*INSTALLED_APPS, "bench.load.baseline.apps.BaselineConfig"]
ROOT_URLCONF = "bench.load.baseline.urls"
