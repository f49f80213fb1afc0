"""Which compose is newer: productmd's order (date, type, respin), within one release."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedora_container_sync.gate.ordering import compose_key, date_type_respin, is_newer, newest


@pytest.mark.parametrize(
    ("candidate", "than", "newer"),
    [
        ("Fedora-41-20241026.0", "Fedora-41-20241025.0", True),
        ("Fedora-41-20241025.0", "Fedora-41-20241026.0", False),
        ("Fedora-41-20241025.0", "Fedora-41-20241025.0", False),
        ("Fedora-41-20241025.1", "Fedora-41-20241025.0", True),  # respin
        ("Fedora-41-20241025.0", "Fedora-41-20241025.n.0", True),  # production > nightly
        ("Fedora-41-20241025.n.1", "Fedora-41-20241025.0", False),  # type before respin
        ("Fedora-41-20241025.n.0", "Fedora-41-20241025.t.3", True),  # nightly > test
        ("Fedora-41-20241024.0", "Fedora-41-20241025.t.0", False),  # date first
        ("Fedora-Rawhide-20230503.n.0", "Fedora-Rawhide-20230502.n.0", True),
        ("Fedora-42-20250101.0", "Fedora-41-20241025.0", False),  # other release
        ("Fedora-IoT-41-20250101.0", "Fedora-41-20241025.0", False),  # other release short
        ("Fedora-Rawhide-20250101.n.0", "Fedora-43-20240101.n.0", False),
        ("not-a-compose", "Fedora-41-20241025.0", False),
        ("Fedora-41-20241025.0", None, False),
        (None, "Fedora-41-20241025.0", False),
        ("Fedora-41-20241026.x.0", "Fedora-41-20241025.0", False),  # unknown type suffix
    ],
)
def test_is_newer(candidate, than, newer):
    assert is_newer(candidate, than) is newer


def test_keys_name_the_release():
    assert compose_key("Fedora-IoT-41-20250101.0").release == "Fedora-IoT-41"
    assert compose_key("Fedora-Rawhide-20230502.n.0").release == "Fedora-Rawhide"
    assert compose_key("") is None


def test_newest_of_the_same_release():
    ids = {"Fedora-41-20241025.0", "Fedora-41-20241027.n.0", "Fedora-42-20250101.0", "junk"}
    assert newest(ids, release_of="Fedora-41-20241026.0") == "Fedora-41-20241027.n.0"
    assert newest(ids, release_of="Fedora-40-20241026.0") is None
    assert newest(ids, release_of="junk") is None


# -- numbers in compose IDs: ASCII digits only ---------------------------------------------------

# Digits Python's \d, isdigit() and int() also take: Arabic-Indic, Devanagari, fullwidth, ...
OTHER_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: c not in "0123456789")


@given(
    release=st.sampled_from(["Fedora-41", "Fedora-Rawhide", "Fedora-IoT-41"]),
    date=st.from_regex(r"\A20[0-9]{6}\Z", fullmatch=True),
    suffix=st.sampled_from(["", ".n", ".t", ".ci", ".d"]),
    respin=st.integers(min_value=0, max_value=9999),
    position=st.integers(min_value=0),
    digit=OTHER_DIGITS,
)
@settings(max_examples=300)
def test_a_non_ascii_digit_in_the_date_or_respin_makes_it_no_compose_id(
    release, date, suffix, respin, position, digit
):
    good = f"{release}-{date}{suffix}.{respin}"
    key = compose_key(good)
    assert key is not None
    assert (key.release, key.date, key.respin) == (release, date, respin)
    assert date_type_respin(good) is not None
    # Replace one ASCII digit of the date or the respin by another script's digit.
    start = len(release) + 1
    numbers = [i for i, c in enumerate(good) if i >= start and c in "0123456789"]
    index = numbers[position % len(numbers)]
    bad = good[:index] + digit + good[index + 1 :]
    assert compose_key(bad) is None
    assert date_type_respin(bad) is None
    assert not is_newer(bad, good) and not is_newer(good, bad)


@pytest.mark.parametrize(
    "compose_id",
    [
        "Fedora-41-20241025.0\n",  # what a '$' lets through
        "Fedora-41-20241025.00000",  # a respin of five digits
        "Fedora-41-20241025." + "9" * 5000,  # int() refuses this many digits
        "Fedora-41-20241025.zz.0",  # an unknown type suffix
        "Fedora-41-2024102.0",
        "Fedora-41-20241025.-1",
        "Fedora-41-20241025. 1",
    ],
)
def test_odd_compose_ids_are_not_compose_ids(compose_id):
    assert compose_key(compose_id) is None
    assert date_type_respin(compose_id) is None
