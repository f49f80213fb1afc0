"""Signing's pure parts: the payload, identities, the .sig manifest, merging, judging, keys."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedora_container_sync.config.settings import Settings
from fedora_container_sync.errors import ConfigError
from fedora_container_sync.oci.manifest import digest_of
from fedora_container_sync.signing.hook import needs_for_tag
from fedora_container_sync.signing.keys import (
    CommandSigner,
    KeyProblem,
    KeySigner,
    SignerUnavailable,
    SigningError,
    load_private_key,
    signature_from_output,
    verify,
)
from fedora_container_sync.signing.payload import (
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING,
    SignatureFormatError,
    identity,
    is_attachment_tag,
    make_payload,
    merged,
    new_layer,
    read_payload,
    read_signature_manifest,
    signature_manifest,
    signature_tag,
)
from fedora_container_sync.signing.setup import load_signing
from fedora_container_sync.signing.status import Checked, Signature, Status, check
from fedora_container_sync.signing.status import judge as judge_checked
from support.signing import cosign_pem, make_key_pair, public_pem

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
IX = "sha256:" + "a" * 64


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_payload_is_cosigns_simple_signing_format_without_a_timestamp():
    payload = make_payload("quay.io/fedora/fedora:41", D1, creator="fcs 1", compose_id="F-41")
    assert json.loads(payload) == {
        "critical": {
            "identity": {"docker-reference": "quay.io/fedora/fedora:41"},
            "image": {"docker-manifest-digest": D1},
            "type": "cosign container image signature",
        },
        "optional": {"creator": "fcs 1", "org.fedoraproject.compose.id": "F-41"},
    }
    again = make_payload("quay.io/fedora/fedora:41", D1, creator="fcs 1", compose_id="F-41")
    assert payload == again
    claim = read_payload(payload)
    assert (claim.identity, claim.digest) == ("quay.io/fedora/fedora:41", D1)


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"critical": {}}', b'{"critical": {"type": "other"}}', b"x" * 70000],
)
def test_reading_a_payload_that_is_not_one_fails(data):
    with pytest.raises(SignatureFormatError):
        read_payload(data)


def test_sig_tag_and_attachment_tags():
    assert signature_tag(D1) == "sha256-" + "1" * 64 + ".sig"
    with pytest.raises(ValueError):
        signature_tag("sha512:abc")
    assert is_attachment_tag(signature_tag(D1))
    assert is_attachment_tag("sha256-" + "1" * 64 + ".att")
    assert is_attachment_tag("sha256-" + "1" * 64)
    assert not is_attachment_tag("41-x86_64")
    assert not is_attachment_tag("latest")


def test_identity_names_the_configured_registry_url_namespace_included():
    assert identity("quay.io/fedora", "fedora", "41") == "quay.io/fedora/fedora:41"
    assert identity("registry.fedoraproject.org", "fedora", "41-x86_64") == (
        "registry.fedoraproject.org/fedora:41-x86_64"
    )


def test_an_index_tag_needs_its_index_and_every_entry_signed_for_its_own_identity():
    needs = needs_for_tag("r.example", "fedora", "41", IX, [D1, D2])
    assert needs == {
        IX: {"r.example/fedora:41"},
        D1: {"r.example/fedora:41"},
        D2: {"r.example/fedora:41"},
    }
    assert needs_for_tag("r.example", "fedora", "41-x86_64", D1) == {
        D1: {"r.example/fedora:41-x86_64"}
    }


def test_signature_manifest_round_trip_and_media_types(key):
    payload = make_payload("r/x:41", D1, creator="c", compose_id=None)
    layer = new_layer(payload, KeySigner(key).sign(payload))
    body, config = signature_manifest([layer])
    document = json.loads(body)
    assert document["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert document["config"]["digest"] == digest_of(config)
    (found,) = document["layers"]
    assert found["mediaType"] == SIMPLESIGNING
    assert found["digest"] == digest_of(payload) and found["size"] == len(payload)
    signature = base64.b64decode(found["annotations"][SIGNATURE_ANNOTATION])
    assert verify(key.public_key(), payload, signature)
    (read,) = read_signature_manifest(body)
    assert read.digest == layer.digest and read.signature == signature


def test_merging_keeps_what_is_there_and_adds_only_what_is_new(key):
    signer = KeySigner(key)
    first = make_payload("r/x:41", D1, creator="c", compose_id=None)
    second = make_payload("r/x:latest", D1, creator="c", compose_id=None)
    foreign = {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "size": 3,
        "digest": D2,
        "annotations": {"dev.sigstore.cosign/bundle": "{}"},
    }
    body, _ = signature_manifest([new_layer(first, signer.sign(first))])
    existing = read_signature_manifest(
        json.dumps({**json.loads(body), "layers": [*json.loads(body)["layers"], foreign]}).encode()
    )
    layers = merged(existing, [new_layer(second, signer.sign(second))])
    assert [layer.digest for layer in layers] == [digest_of(first), D2, digest_of(second)]
    assert layers[1].descriptor == foreign  # kept as found
    # The same layer again adds nothing.
    assert merged(layers, [layers[2]]) == layers


def judge(signatures, digest, identity_, public):
    return judge_checked(check(signatures, lambda p, s: verify(public, p, s)), digest, identity_)


def _checked(key, public, identity_: str, digest: str) -> Checked:
    (checked,) = check([_signature(key, identity_, digest)], lambda p, s: verify(public, p, s))
    return checked


def _signature(key, identity_: str, digest: str) -> Signature:
    payload = make_payload(identity_, digest, creator="c", compose_id=None)
    return Signature(new_layer(payload, KeySigner(key).sign(payload)), payload)


def test_judging_says_why_a_tag_is_not_signed(key):
    other = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    assert judge([], D1, "r/x:41", public).status is Status.NONE
    assert judge([_signature(key, "r/x:41", D1)], D1, "r/x:41", public).status is Status.VALID
    wrong_tag = judge([_signature(key, "r/x:41-x86_64", D1)], D1, "r/x:41", public)
    assert wrong_tag.status is Status.OTHER_IDENTITY
    assert wrong_tag.describe() == "signed only for other tags (41-x86_64)"
    assert judge([_signature(other, "r/x:41", D1)], D1, "r/x:41", public).status is (
        Status.OTHER_KEY
    )
    # A valid signature of this key for another digest, copied under this digest's .sig.
    assert judge([_signature(key, "r/x:41", D2)], D1, "r/x:41", public).status is Status.INVALID
    # Tampered: the payload changed after signing.
    good = _signature(key, "r/x:41", D1)
    tampered = Signature(good.layer, good.payload.replace(b"r/x:41", b"r/x:42"))  # type: ignore[union-attr]
    assert judge([tampered], D1, "r/x:42", public).status is not Status.VALID
    garbage = Signature(good.layer, b"{")
    assert judge([garbage], D1, "r/x:41", public).status is Status.INVALID


def test_a_cosign_format_key_decrypts_with_its_passphrase_only(key):
    for label in ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"):
        pem = cosign_pem(key, "right", label=label)
        loaded = load_private_key(pem, "right")
        assert loaded.public_key().public_numbers() == key.public_key().public_numbers()
        with pytest.raises(KeyProblem, match="wrong passphrase"):
            load_private_key(pem, "wrong")


def test_a_pkcs8_encrypted_key_is_read_too(key):
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    assert isinstance(load_private_key(pem, "pw"), ec.EllipticCurvePrivateKey)
    with pytest.raises(KeyProblem):
        load_private_key(pem, "nope")


@pytest.mark.parametrize(
    "text",
    [
        "no pem here",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n"
        "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
    ],
)
def test_unusable_keys_are_refused_in_one_line(text):
    with pytest.raises(KeyProblem):
        load_private_key(text, "pw")


def test_absurd_scrypt_parameters_are_refused_before_any_work(key):
    pem = cosign_pem(key, "pw")
    body = "".join(pem.splitlines()[1:-1])
    envelope = json.loads(base64.b64decode(body))
    envelope["kdf"]["params"]["N"] = 1 << 30
    label = "ENCRYPTED SIGSTORE PRIVATE KEY"
    body = base64.b64encode(json.dumps(envelope).encode()).decode()
    hostile = f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"
    with pytest.raises(KeyProblem, match="out of bounds"):
        load_private_key(hostile, "pw")


def test_signer_output_may_be_der_or_base64(key):
    signature = KeySigner(key).sign(b"x")
    assert signature_from_output(signature, "s") == signature
    assert signature_from_output(base64.b64encode(signature) + b"\n", "s") == signature
    with pytest.raises(SigningError):
        signature_from_output(b"not a signature", "s")


def test_the_command_signer_gets_the_payload_on_stdin_and_no_secrets(tmp_path, key):
    script = tmp_path / "signer.py"
    script.write_text(
        "import os, sys\n"
        "assert 'SIGNING_KEY' not in os.environ, 'secret leaked'\n"
        "sys.stdout.write(sys.stdin.read()[::-1])\n"
    )
    signer = CommandSigner(
        [sys.executable, str(script)],
        timeout=30,
        hide_env=("SIGNING_KEY",),
        environ={"SIGNING_KEY": "x", "PATH": "/usr/bin"},
    )
    encoded = base64.b64encode(b"\x30abc").decode()
    assert signer.sign(encoded[::-1].encode()) == b"\x30abc"
    failing = CommandSigner(["false"], timeout=30)
    with pytest.raises(SignerUnavailable, match="exit status 1"):
        failing.sign(b"x")
    slow = CommandSigner(["sleep", "5"], timeout=0.2)
    with pytest.raises(SignerUnavailable, match="no answer"):
        slow.sign(b"x")


def _settings(public_key, **signing) -> Settings:
    return Settings.model_validate(
        {
            "repos": {"Container_Base": "fedora"},
            "registries": [{"url": "r.example"}],
            "compose_url_allowlist": ["https://kojipkgs.example/compose/"],
            "signing": {"enabled": True, "public_key": str(public_key), **signing},
        }
    )


def test_signing_is_off_by_default_and_needs_a_public_key_when_on():
    settings = Settings.model_validate(
        {
            "repos": {"Container_Base": "fedora"},
            "registries": [{"url": "r.example"}],
            "compose_url_allowlist": ["https://kojipkgs.example/compose/"],
        }
    )
    assert settings.signing.enabled is False
    with pytest.raises(ValueError, match="public_key is required"):
        Settings.model_validate({**settings.model_dump(mode="json"), "signing": {"enabled": True}})


def test_with_signing_off_a_run_never_imports_cryptography():
    """cryptography costs about 7 MB of a replay's peak RSS: a run with signing off, the
    default, must not load it. In a fresh interpreter, as this test module has loaded it."""
    code = """
import sys
from fedora_container_sync import cli, consumer
from fedora_container_sync.config.settings import Settings
from fedora_container_sync.publish import execute, indexes, pipeline, push
from fedora_container_sync.signing.hook import sign_for_tag
from fedora_container_sync.signing.setup import check_signing, signing_for
settings = Settings.model_validate({
    "repos": {"Container_Base": "fedora"},
    "registries": [{"url": "r.example"}],
    "compose_url_allowlist": ["https://kojipkgs.example/compose/"],
})
check_signing(settings)
assert signing_for(settings) is None
print(sorted(name for name in sys.modules if name.split(".")[0] in ("cryptography", "nacl")))
"""
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]", ran.stdout


def test_the_key_is_checked_against_public_key_at_start(tmp_path):
    pair = make_key_pair(tmp_path)
    env = {"SIGNING_KEY": pair.private_pem, "SIGNING_PASSPHRASE": pair.passphrase}
    signing = load_signing(_settings(pair.public_path), env)
    assert verify(signing.public_key, b"p", signing.signer.sign(b"p"))

    with pytest.raises(ConfigError, match="wrong passphrase") as wrong:
        load_signing(_settings(pair.public_path), {**env, "SIGNING_PASSPHRASE": "nope"})
    assert pair.passphrase not in str(wrong.value)
    with pytest.raises(ConfigError, match="SIGNING_PASSPHRASE is not set"):
        load_signing(_settings(pair.public_path), {"SIGNING_KEY": pair.private_pem})
    other = make_key_pair(tmp_path, "other")
    with pytest.raises(ConfigError, match="is not the private key of public_key"):
        load_signing(_settings(other.public_path), env)
    with pytest.raises(ConfigError, match="unreadable"):
        load_signing(_settings(tmp_path / "missing.pub"), env)


def test_the_key_comes_from_credentials_directory_like_registry_credentials(tmp_path):
    pair = make_key_pair(tmp_path)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "SIGNING_KEY").write_text(pair.private_pem)
    (creds / "SIGNING_PASSPHRASE").write_text(pair.passphrase + "\n")
    signing = load_signing(_settings(pair.public_path), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert verify(signing.public_key, b"p", signing.signer.sign(b"p"))


def test_a_command_signer_is_checked_with_a_self_test(tmp_path):
    pair = make_key_pair(tmp_path)
    key_file = tmp_path / "plain.pem"
    key_file.write_bytes(
        pair.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    sign = ["openssl", "pkeyutl", "-sign", "-rawin", "-digest", "sha256", "-inkey", str(key_file)]
    signing = load_signing(_settings(pair.public_path, command=sign), {"PATH": "/usr/bin:/bin"})
    assert verify(signing.public_key, b"p", signing.signer.sign(b"p"))
    other = make_key_pair(tmp_path, "other")
    with pytest.raises(ConfigError, match="does not verify with public_key"):
        load_signing(_settings(other.public_path, command=sign), {"PATH": "/usr/bin:/bin"})
    with pytest.raises(ConfigError, match="self-test failed"):
        load_signing(_settings(pair.public_path, command=["false"]), {"PATH": "/usr/bin:/bin"})
    assert public_pem(pair.key) == pair.public_path.read_bytes()


# -- the audit's unsigned findings -------------------------------------------------------------


def test_the_audit_finds_each_unsigned_tag_and_index_entry_and_says_why(key):
    from datetime import UTC, datetime

    from fedora_container_sync.audit.findings import Kind, find_unsigned
    from fedora_container_sync.audit.state import Build, IndexState, RepositoryState

    other = ec.generate_private_key(ec.SECP256R1())
    reg, repo = "r.example/ns", "fedora"
    x86, arm = Build(D1, "Fedora-41-20241025.0"), Build(D2, "Fedora-41-20241025.0")
    index = IndexState(IX, "Fedora-41-20241025.0", {"x86_64": x86, "aarch64": arm})
    name = f"{reg}/{repo}"
    public = key.public_key()
    signatures = {
        # 41-x86_64 signed for itself, and for 41 as an entry: nothing to report.
        D1: (
            _checked(key, public, f"{name}:41-x86_64", D1),
            _checked(key, public, f"{name}:41", D1),
        ),
        # aarch64: only for its own tag (41 lacks it) and by another key for 41.
        D2: (
            _checked(key, public, f"{name}:41-aarch64", D2),
            _checked(other, public, f"{name}:41", D2),
        ),
        # the index: nothing.
    }
    state = RepositoryState(
        reg,
        repo,
        frozenset({"41", "41-x86_64", "41-aarch64", "sha256-" + "1" * 64 + ".sig"}),
        {"41": index, "41-x86_64": x86, "41-aarch64": arm},
        signatures,
    )
    now = datetime(2024, 10, 26, tzinfo=UTC)
    found = {(f.tag, f.arch): f for f in find_unsigned(state, now)}
    assert set(found) == {("41", None), ("41", "aarch64")}
    assert all(f.kind is Kind.UNSIGNED for f in found.values())
    assert found[("41", None)].summary.endswith("no signature for :41")
    assert "signed only for other tags (41-aarch64)" in found[("41", "aarch64")].summary
    assert found[("41", "aarch64")].age_hours == 24
    # Without this key's signatures at all: another key's.
    state = RepositoryState(
        reg,
        repo,
        frozenset({"41-aarch64"}),
        {"41-aarch64": arm},
        {D2: (_checked(other, public, f"{name}:41-aarch64", D2),)},
    )
    (finding,) = find_unsigned(state, now)
    assert "signed only by other keys" in finding.summary
    # Signatures not read (no public_key): no finding.
    state = RepositoryState(reg, repo, frozenset({"41-aarch64"}), {"41-aarch64": arm})
    assert find_unsigned(state, now) == []
