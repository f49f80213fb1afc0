"""Which compose is newer: productmd's order (date, type, respin), within one release."""

import pytest

from fedora_container_sync.ordering import compose_key, is_newer, newest


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
