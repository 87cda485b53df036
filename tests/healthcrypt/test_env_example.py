"""`.env.example` lists every variable that settings.py reads."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_variable_settings_reads() -> None:
    source = (ROOT / "healthcrypt" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|int|list|secret)\("([A-Z_]+)"', source))
    read |= set(settings.REQUIRED_SECRETS)
    example = (ROOT / ".env.example").read_text()
    missing = sorted(name for name in read if not re.search(rf"^#?\s*{name}=", example, re.MULTILINE))
    assert missing == []
