from __future__ import annotations

import pytest

from research.zip3 import RESTRICTED_ZIP3, zip3

# HHS OCR de-identification guidance (2012), §3.6: the 2000 Census list, written out again here so a
# change to the shipped list has to change this test too.
HHS_2000_RESTRICTED = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821",
    "823", "830", "831", "878", "879", "884", "890", "893",
]  # fmt: skip


def test_the_shipped_list_is_the_hhs_list_of_17():
    assert sorted(RESTRICTED_ZIP3) == HHS_2000_RESTRICTED
    assert len(RESTRICTED_ZIP3) == 17


@pytest.mark.parametrize("prefix", HHS_2000_RESTRICTED)
def test_restricted_areas_become_000(prefix):
    assert zip3(f"{prefix}45") == "000"
    assert zip3(f"{prefix}451234") == "000"
    assert zip3(f"{prefix}45-1234") == "000"


@pytest.mark.parametrize(
    ("code", "expected"),
    [("02139", "021"), ("10001", "100"), ("60614-2201", "606"), ("941031234", "941"), (" 30301 ", "303")],
)
def test_other_areas_keep_three_digits(code, expected):
    assert zip3(code) == expected


@pytest.mark.parametrize(
    "junk",
    [
        "",
        None,
        "0213",
        "021399",
        "02139-12",
        "SW1A 1AA",
        "K1A 0B1",
        "abcde",
        "02l39",
        "\uff10\uff12\uff11\uff13\uff19",
        "02139\n1234",
    ],
)
def test_anything_not_a_five_or_nine_digit_zip_becomes_000(junk):
    assert zip3(junk) == "000"
