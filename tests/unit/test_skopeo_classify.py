"""skopeo's failures, classified from its stderr. The lines are what skopeo 1.9.3 printed in
this project's fault tests (tests/integration/test_faults.py) and in the research notes."""

from __future__ import annotations

import pytest

from fedora_container_sync.errors import SkopeoError, SkopeoTransientError
from fedora_container_sync.registry.skopeo import classify

BLOB = "sha256:f563372868590a8d15f7d2f6e52b4ea05e3d125c662f1ba758666241bbbb68f7"
REUSE = f"trying to reuse blob {BLOB} at destination: "
T = SkopeoTransientError
P = SkopeoError


def fatal(message: str) -> str:
    escaped = message.replace('"', '\\"')
    return f'time="2024-10-26T08:00:00Z" level=fatal msg="{escaped}"\n'


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (REUSE + "failed to read from destination repository ns/x: 503 (Service Unavailable)", T),
        (REUSE + "failed to read from destination repository ns/x: 502 (Bad Gateway)", T),
        (REUSE + "failed to read from destination repository ns/x: 504 (Gateway Timeout)", T),
        (REUSE + "failed to read from destination repository ns/x: 429 (Too Many Requests)", T),
        (REUSE + f'Head "http://127.0.0.1:5000/v2/ns/x/blobs/{BLOB}": EOF', T),
        (
            "writing manifest: uploading manifest 41-ppc64le to 127.0.0.1:5000/ns/x: "
            "unavailable: service unavailable",
            T,
        ),
        ("writing blob: toomanyrequests: You have reached your pull rate limit", T),
        (
            REUSE + 'pinging container registry 127.0.0.1:5999: Get "http://127.0.0.1:5999/v2/": '
            "dial tcp 127.0.0.1:5999: connect: connection refused",
            T,
        ),
        ('Put "http://127.0.0.1:5000/v2/ns/x/manifests/41": read: connection reset by peer', T),
        ('Get "https://quay.io/v2/": dial tcp 1.2.3.4:443: i/o timeout', T),
        ("received unexpected HTTP status: 503 Service Unavailable", T),
        ('Get "https://quay.io/v2/": net/http: TLS handshake timeout', T),
        (
            REUSE + f"checking whether a blob {BLOB} exists in 127.0.0.1:5000/ns/x: "
            "unauthorized: authentication required",
            P,
        ),
        (REUSE + "failed to read from destination repository ns/x: 403 (Forbidden)", P),
        (REUSE + "failed to read from destination repository ns/x: 400 (Bad Request)", P),
        (
            "initializing source docker://127.0.0.1:5000/ns/x:here: reading manifest here in "
            "127.0.0.1:5000/ns/x: manifest unknown: manifest unknown",
            P,
        ),
        ("writing blob: denied: requested access to the resource is denied", P),
        (
            'Invalid image name "docker://127.0.0.1:5000/NS/x:41": invalid reference format: '
            "repository name must be lowercase",
            P,
        ),
        ("open /var/lib/x/layout/index.json: no such file or directory", P),
        # A permanent answer wins even when a transient word appears earlier on.
        ("retrying after timeout; then: unauthorized: authentication required", P),
    ],
)
def test_classify(message, kind):
    error = classify(fatal(message), what="push of r:41-x86_64")
    assert type(error) is kind
    assert str(error).startswith("push of r:41-x86_64: ")
    assert "\n" not in str(error)
    assert "level=fatal" not in str(error)


def test_classify_reads_the_last_fatal_message_and_unescapes_it():
    stderr = 'time="t" level=warning msg="Failed, retrying in 1s ... (1/2)"\n' + fatal(
        'Get "http://h/v2/": EOF'
    )
    error = classify(stderr, what="push")
    assert str(error) == 'push: Get "http://h/v2/": EOF'


def test_classify_without_any_message():
    error = classify("", what="push")
    assert type(error) is SkopeoError
    assert str(error) == "push: skopeo failed without a message"


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (
            "writing blob: write /w/tmp/oci-put-blob1: no space left on device",
            "no space left on device",
        ),
        ("copying system image: write /w/x: Disk quota exceeded", "disk quota exceeded"),
        ("writing blob: write /w/layouts/x/blobs/sha256/y: file too large", "file too large"),
        ("writing blob: open /w/x: permission denied", None),
        ("received unexpected HTTP status: 500 Internal Server Error", None),
    ],
)
def test_a_full_disk_is_recognised_in_skopeo_s_words(message, words):
    from fedora_container_sync.registry.skopeo import full_disk

    assert full_disk(f"conversion of x: {message}") == words
