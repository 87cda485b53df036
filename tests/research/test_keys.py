from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from healthcrypt import checks
from healthcrypt.crypto import decode_key, generate_key
from research.keys import research_pseudonym_key
from research.pseudonyms import pseudonym


def test_the_research_key_comes_from_the_settings():
    key = generate_key()
    with override_settings(RESEARCH_PSEUDONYM_KEY=key):
        assert research_pseudonym_key() == decode_key(key, name="k")
        first = pseudonym(research_pseudonym_key(), "p", uuid.UUID(int=1))
    with override_settings(RESEARCH_PSEUDONYM_KEY=generate_key()):
        assert pseudonym(research_pseudonym_key(), "p", uuid.UUID(int=1)) != first


@pytest.mark.parametrize("value", ["", "not base64 !", "c2hvcnQ"])
def test_a_missing_or_malformed_research_key_is_refused(value):
    with (
        override_settings(RESEARCH_PSEUDONYM_KEY=value),
        pytest.raises(ImproperlyConfigured, match="RESEARCH_PSEUDONYM_KEY"),
    ):
        research_pseudonym_key()


def test_the_system_checks_refuse_a_malformed_research_key():
    with override_settings(RESEARCH_PSEUDONYM_KEY="c2hvcnQ"):
        messages = checks.check_key_material()
    assert [m.id for m in messages] == ["healthcrypt.E002"]
    assert "RESEARCH_PSEUDONYM_KEY" in messages[0].msg


def test_the_research_key_may_not_double_as_another_key():
    key = generate_key()
    with override_settings(RESEARCH_PSEUDONYM_KEY=key, BLIND_INDEX_KEY=key):
        messages = checks.check_key_material()
    assert [m.id for m in messages] == ["healthcrypt.E003"]
    assert "RESEARCH_PSEUDONYM_KEY" in messages[0].msg
