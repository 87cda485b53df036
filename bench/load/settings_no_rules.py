"""A diagnostic subject for the load test: the full security stack with the inline anomaly rules off
(``--subject-settings bench.load.settings_no_rules``), to measure what the rules cost under load. The
rules are part of the product; this module is for measuring only, like bench/detection.py's switch."""

from healthcrypt.settings import *  # noqa: F403

ANOMALY_RULES_INLINE = False
