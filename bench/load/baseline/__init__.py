"""The load test's baseline: the same pages from plaintext mirror rows, no policy, no audit.

Installed only by ``bench.load.settings_baseline`` (never by ``healthcrypt.settings``, which refuses
the baseline switch outright), against a throwaway bench database.
"""
