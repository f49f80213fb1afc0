"""The deadlines of a 2 GiB image on a slow link agree: a push may take as long as a download
is allowed to (docs/operating.md, "Deadlines, liveness and redelivery")."""

from __future__ import annotations

import json

import pytest

from fedora_container_sync.config.settings import Settings
from fedora_container_sync.publish.push import upload_size

GIB = 1 << 30


def defaults(**extra: object) -> Settings:
    return Settings.model_validate(
        {
            "repos": {"Container_Base": "fedora"},
            "registries": [{"url": "quay.io/fedora"}],
            "compose_url_allowlist": ["https://kojipkgs.fedoraproject.org/compose/"],
            **extra,
        }
    )


def test_a_2_gib_image_at_the_minimum_rate():
    settings = defaults()
    download = settings.transfer_deadline(2 * GIB)
    assert download == 300 + 8192  # http_deadline + 2 GiB / 256 KiB/s
    # skopeo_timeout alone (3600 s) would kill the push of what the download was allowed.
    assert settings.skopeo_timeout < download
    assert settings.push_deadline(2 * GIB) == download
    # A small image keeps skopeo_timeout.
    assert settings.push_deadline(100 << 20) == settings.skopeo_timeout
    # What never moves a byte for long is bounded below stuck_after: only that is stuck.
    assert max(settings.http_deadline, settings.retry.max_total) < settings.stuck_after


def test_deadlines_follow_the_settings():
    settings = defaults(http_deadline=60.0, min_download_rate=1 << 20, skopeo_timeout=600.0)
    assert settings.push_deadline(2 * GIB) == 60 + 2048
    assert settings.push_deadline(0) == 600.0


@pytest.mark.parametrize(
    ("manifest", "size"),
    [
        (
            {
                "config": {"size": 1000},
                "layers": [{"size": 2 * GIB}, {"size": 5}],
            },
            2 * GIB + 1005,
        ),
        ({"config": {"size": 10}, "layers": []}, 10),
        ({"manifests": []}, 0),  # not an image manifest: skopeo_timeout
        ({"config": {"size": "big"}, "layers": []}, 0),
    ],
)
def test_upload_size_of_a_manifest(manifest, size):
    assert upload_size(json.dumps(manifest).encode()) == size


def test_upload_size_of_garbage():
    assert upload_size(b"\xff not json") == 0
    assert upload_size(b"[]") == 0
