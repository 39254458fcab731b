"""The country of a mobile number (contract 7.4, 15.1 items 42 and 48): libphonenumber's numbering
plans decide a valid number; a number valid in no region goes to the country whose dialing prefix
is its longest prefix, ties to the calling code's main country."""

import phonenumbers
import pycountry
import pytest

from octopus_cards.models.topups import calling_country


def dialing_prefix(alpha_2):
    code = phonenumbers.country_code_for_region(alpha_2)
    return f"+{code}" if code else ""


# Every ISO 3166-1 country with its dialing prefix, as the reference data has them.
WORLD = {country.alpha_2: dialing_prefix(country.alpha_2) for country in pycountry.countries}
# A hand-made subset: shared calling codes and a few single ones.
SOME = {"US": "+1", "CA": "+1", "JM": "+1", "PR": "+1", "RU": "+7", "KZ": "+7", "GB": "+44", "GG": "+44", "JE": "+44",
        "IM": "+44", "IN": "+91", "DE": "+49", "FR": "+33"}  # fmt: skip


def test_the_reference_data_prefixes_share_calling_codes():
    assert {code for code, prefix in WORLD.items() if prefix == "+7"} == {"RU", "KZ"}
    assert {"US", "CA", "JM", "PR"} <= {code for code, prefix in WORLD.items() if prefix == "+1"}
    assert {code for code, prefix in WORLD.items() if prefix == "+44"} == {"GB", "GG", "JE", "IM"}
    assert WORLD["AQ"] == "" and "XK" not in WORLD and "TA" not in WORLD


@pytest.mark.parametrize("prefixes", [WORLD, SOME], ids=["world", "subset"])
@pytest.mark.parametrize(
    "number, expected",
    [
        # +1: the number decides among the countries of the North American plan.
        ("+12015550123", "US"), ("+12125551234", "US"), ("+14165550123", "CA"), ("+15062345678", "CA"),
        ("+18762101234", "JM"), ("+17872345678", "PR"),
        # +7: Russia and Kazakhstan.
        ("+74951234567", "RU"), ("+79123456789", "RU"), ("+77011234567", "KZ"), ("+77710009998", "KZ"),
        # +44: the United Kingdom and the Crown Dependencies.
        ("+447400123456", "GB"), ("+447911000000", "GB"), ("+447911123456", "GG"), ("+447781123456", "GG"),
        ("+447797712345", "JE"), ("+441534123456", "JE"), ("+447624123456", "IM"),
        # Calling codes of one country.
        ("+918879685100", "IN"), ("+4915123456789", "DE"), ("+33612345678", "FR"),
        # Valid in no region: the longest prefix, ties to the calling code's main country.
        ("+15555555555", "US"), ("+1234567", "US"), ("+18760000000", "US"), ("+70000000000", "RU"),
        ("+777777777777", "RU"), ("+440000000000", "GB"), ("+447700900123", "GB"), ("+4412345", "GB"),
        ("+9100000000", "IN"),
        # No country has the calling code.
        ("+999123456", None), ("+80012345678", None), ("+88812345678", None),
    ],
)  # fmt: skip
def test_the_country_of_a_number(prefixes, number, expected):
    assert calling_country(number, prefixes) == expected


@pytest.mark.parametrize(
    "number, expected",
    [("+5999000000", "CW"),  # +599 is Curaçao's and Bonaire's: an invalid number goes to the main one, CW
     ("+5997000000", "BQ"),  # ... a valid one to its region
     ("+4741234567", "NO"), ("+4779000000", "SJ"), ("+61212345678", "AU"), ("+61891621234", "CC"),
     ("+262262123456", "RE"), ("+262269601234", "YT"),
     ("+2906658", "SH"),  # invalid, +290 is Saint Helena's only
     ("+2908001", "SH"),  # valid in Tristan da Cunha (TA), which is no ISO 3166-1 country: the prefix's
     ("+38343201234", None),  # valid in Kosovo (XK), no ISO 3166-1 country, and no country has +383
     ("+2478001", None)],  # Ascension (AC, +247): neither a country nor a prefix of one
)  # fmt: skip
def test_other_shared_calling_codes_and_regions_that_are_no_countries(number, expected):
    assert calling_country(number, WORLD) == expected


@pytest.mark.parametrize(
    "prefixes, number, expected",
    [
        # A region libphonenumber gives that is not in the map: the longest prefix instead.
        ({"US": "+1", "JM": "+1"}, "+14165550123", "US"), ({"RU": "+7"}, "+77011234567", "RU"),
        ({"GB": "+44", "JE": "+44"}, "+447781123456", "GB"), ({"US": "+1", "CA": "+1"}, "+18762101234", "US"),
        ({"DE": "+49"}, "+33612345678", None),
        # A longer prefix that only some entries have wins for a number valid in no region ...
        ({"US": "+1", "CA": "+1", "JM": "+1876"}, "+18760000000", "JM"),
        ({"US": "+1", "CA": "+1", "JM": "+1876"}, "+15555555555", "US"),
        ({"GB": "+44", "GG": "+441481"}, "+441481000000", "GG"),
        # ... but not over the region of a valid number.
        ({"US": "+1", "JM": "+1876", "CA": "+1"}, "+12015550123", "US"),
        ({"GB": "+44", "GG": "+44"}, "+447400123456", "GB"),
        # Countries without a calling code never match.
        ({"AQ": "", "BV": "", "US": "+1"}, "+999123456", None), ({"AQ": ""}, "+12015550123", None),
        ({}, "+12015550123", None),
        # The main country of a tie is the calling code's, whatever the order of the map.
        ({"KZ": "+7", "RU": "+7"}, "+70000000000", "RU"),
        ({"JE": "+44", "GG": "+44", "GB": "+44"}, "+440000000000", "GB"),
        ({"PR": "+1", "CA": "+1", "JM": "+1", "US": "+1"}, "+15555555555", "US"),
    ],
)  # fmt: skip
def test_hand_made_maps(prefixes, number, expected):
    assert calling_country(number, prefixes) == expected


def test_the_map_is_not_changed():
    prefixes = dict(SOME)
    calling_country("+15555555555", prefixes)
    calling_country("+77011234567", prefixes)
    assert prefixes == SOME
