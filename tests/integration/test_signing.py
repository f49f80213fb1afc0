"""Signing end to end: a real registry, real skopeo pushes, and the verdict of a Fedora client
(containers/image's ``sigstoreSigned`` policy with ``use-sigstore-attachments``, run through
Debian 13's skopeo 1.18, and Debian 13's cosign 2.5), never the project's own code.

These tests need Debian 13's skopeo and cosign (``tests/tools/debian13-sigstore.sh``, fetched by
``make test``): without them they skip, except under CI=true, where they fail."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fedora_container_sync.oci.manifest import digest_of
from fedora_container_sync.signing.payload import signature_tag
from support.harness import Harness
from support.signing import KeyPair, debian13_tools, make_key_pair

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
ARCHES = ("x86_64", "aarch64")
_WRITE = re.compile(r'"(PUT|POST|PATCH|DELETE) (/v2/\S*) HTTP/')


@pytest.fixture(scope="module")
def tools() -> Path:
    return debian13_tools()


@pytest.fixture
def keys(tmp_path) -> KeyPair:
    return make_key_pair(tmp_path / "keys")


def enable_signing(harness: Harness, keys: KeyPair, monkeypatch, **extra: str) -> None:
    lines = "".join(f"{k} = {v}\n" for k, v in extra.items())
    harness.extra_config = (
        "[consumer_config.container.signing]\n"
        f'enabled = true\npublic_key = "{keys.public_path}"\n{lines}'
    )
    monkeypatch.setenv("SIGNING_KEY", keys.private_pem)
    monkeypatch.setenv("SIGNING_PASSPHRASE", keys.passphrase)


class Client:
    """A Fedora client's view: policy.json + registries.d, pulls with Debian 13's skopeo."""

    def __init__(self, tools: Path, harness: Harness, public_key: Path, directory: Path) -> None:
        self.tools = tools
        self.harness = harness
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        scope = f"{harness.registries[0].host}/{harness.namespace}"
        (directory / "policy.json").write_text(
            json.dumps(
                {
                    "default": [{"type": "reject"}],
                    "transports": {
                        "docker": {scope: [{"type": "sigstoreSigned", "keyPath": str(public_key)}]}
                    },
                }
            )
        )
        registries_d = directory / "registries.d"
        registries_d.mkdir(exist_ok=True)
        (registries_d / "test.yaml").write_text(
            f"docker:\n  {scope}:\n    use-sigstore-attachments: true\n"
        )
        self.pulls = 0

    def reference(self, tag: str) -> str:
        return f"{self.harness.registries[0].host}/{self.harness.namespace}/{TOOLBOX}:{tag}"

    def pull(self, tag: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``skopeo copy`` under the policy (what podman pull checks)."""
        self.pulls += 1
        return subprocess.run(
            [
                str(self.tools / "skopeo"),
                "--policy",
                str(self.directory / "policy.json"),
                "--registries.d",
                str(self.directory / "registries.d"),
                "copy",
                "--src-tls-verify=false",
                "--remove-signatures",
                *args,
                f"docker://{self.reference(tag)}",
                f"oci:{self.directory / f'pull-{self.pulls}'}:x",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def accepts(self, tag: str, *args: str) -> None:
        done = self.pull(tag, *args)
        assert done.returncode == 0, f"{tag} {args} refused: {done.stderr}"

    def refuses(self, tag: str, *args: str) -> str:
        done = self.pull(tag, *args)
        assert done.returncode != 0, f"{tag} {args} accepted"
        return done.stderr

    def cosign_verify(self, tag: str, public_key: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.tools / "cosign"),
                "verify",
                "--key",
                str(public_key),
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
                self.reference(tag),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


def writes(harness: Harness, since: int) -> list[str]:
    lines = harness.registries[0].log_text().splitlines()[since:]
    found = [m.group(2) for m in map(_WRITE.search, lines) if m]
    return [path for path in found if f"/v2/{harness.namespace}/" in path]


def log_length(harness: Harness) -> int:
    return len(harness.registries[0].log_text().splitlines())


def test_every_tag_verifies_as_a_fedora_client_checks_it(
    harness, keys, monkeypatch, tools, tmp_path
):
    enable_signing(harness, keys, monkeypatch)
    result = harness.replay(harness.compose(OLD, arches=ARCHES))
    assert result.code == 0, result.err
    client = Client(tools, harness, keys.public_path, tmp_path / "client")
    for arch in ARCHES:
        client.accepts(f"41-{arch}")
        client.accepts("41", "--override-arch", "arm64" if arch == "aarch64" else "amd64")
    for tag in ("41", "latest"):
        client.accepts(tag, "--all")
    # cosign checks the digest a tag resolves to: the index for 41, the image for 41-x86_64.
    for tag in ("41", "latest", "41-x86_64"):
        verified = client.cosign_verify(tag, keys.public_path)
        assert verified.returncode == 0, verified.stderr
        claims = [c["critical"] for c in json.loads(verified.stdout)]
        assert client.reference(tag) in {c["identity"]["docker-reference"] for c in claims}
    # Another key is refused, by containers/image and by cosign.
    other = make_key_pair(tmp_path / "other")
    stranger = Client(tools, harness, other.public_path, tmp_path / "stranger")
    stranger.refuses("41-x86_64")
    stranger.refuses("41", "--all")
    assert client.cosign_verify("41", other.public_path).returncode != 0


def test_signing_an_unsigned_registry_moves_no_tag_and_a_signed_replay_writes_nothing(
    harness, keys, monkeypatch, tools, tmp_path
):
    body = harness.compose(OLD, arches=ARCHES)
    assert harness.replay(body).code == 0  # signing off
    client = Client(tools, harness, keys.public_path, tmp_path / "client")
    assert "signature" in client.refuses("41-x86_64").lower()
    client.refuses("41", "--all")
    tags = {
        tag: harness.digest(TOOLBOX, tag) for tag in ("41", "latest", "41-x86_64", "41-aarch64")
    }

    enable_signing(harness, keys, monkeypatch)
    since = log_length(harness)
    dry = harness.replay(body, args=["--dry-run"])
    assert dry.code == 0, dry.err
    assert writes(harness, since) == [], "a dry run wrote"
    # The dry run lists what a real run would sign: the tags hold their builds already, so
    # each signature is for a digest the registry holds, written where missing.
    listed = dry.out.split("would sign (identity, digest, what; a dry run signs nothing):\n")[1]
    rows = {tuple(line.split()[:2]) for line in listed.splitlines() if line.startswith("    ")}
    for tag in tags:
        short = tags[tag][:19]  # sha256: and 12 hex digits, as the summary shows digests
        assert (client.reference(tag), short) in rows, f"{tag} {short} not in:\n{dry.out}"
    assert "signed:" not in dry.out
    result = harness.replay(body)
    assert result.code == 0, result.err
    # Per-arch tags 2, index tags 2 x (index + 2 entries): 8 signatures, none there before.
    assert "  signed: 8 signatures written, 0 already there" in result.out.splitlines()
    written = writes(harness, since)
    assert written, "nothing was signed"
    assert all(path.endswith(".sig") or "/blobs/" in path for path in written), (
        f"a release tag was written: {written}"
    )
    assert {tag: harness.digest(TOOLBOX, tag) for tag in tags} == tags
    for tag in ("41-x86_64", "41-aarch64"):
        client.accepts(tag)
    client.accepts("41", "--all")
    client.accepts("latest", "--all")

    since = log_length(harness)
    again = harness.replay(body)
    assert again.code == 0, again.err
    assert writes(harness, since) == [], "a replay of a signed compose wrote"
    assert "  signed: 0 signatures written, 8 already there" in again.out.splitlines()


def test_a_tampered_signature_is_refused(harness, keys, monkeypatch, tools, tmp_path):
    enable_signing(harness, keys, monkeypatch)
    assert harness.replay(harness.compose(OLD, arches=ARCHES)).code == 0
    client = Client(tools, harness, keys.public_path, tmp_path / "client")
    client.accepts("41-x86_64")
    registry, repo = harness.registries[0], harness.repo(TOOLBOX)
    digest = harness.digest(TOOLBOX, "41-x86_64")
    assert digest
    _, _, body = registry.get_manifest(repo, signature_tag(digest)) or ("", "", b"")
    manifest = json.loads(body)
    for layer in manifest["layers"]:
        annotations = layer["annotations"]
        der = bytearray(base64.b64decode(annotations["dev.cosignproject.cosign/signature"]))
        der[-1] ^= 0x01
        annotations["dev.cosignproject.cosign/signature"] = base64.b64encode(der).decode()
    tampered = json.dumps(manifest).encode()
    with registry.client() as http:
        answer = http.put(
            f"/v2/{repo}/manifests/{signature_tag(digest)}",
            content=tampered,
            headers={"Content-Type": manifest["mediaType"]},
        )
    answer.raise_for_status()
    client.refuses("41-x86_64")
    client.refuses("41", "--override-arch", "amd64")
    # The next run finds no valid signature and writes one, keeping the tampered ones.
    assert harness.replay(harness.compose(OLD, arches=ARCHES)).code == 0
    client.accepts("41-x86_64")
    _, _, after = registry.get_manifest(repo, signature_tag(digest)) or ("", "", b"")
    assert digest_of(after) != digest_of(tampered)


# -- failing closed (no client needed) -------------------------------------------------------


def test_a_bad_key_stops_the_run_at_start_with_nothing_done(harness, keys, monkeypatch):
    enable_signing(harness, keys, monkeypatch)
    monkeypatch.setenv("SIGNING_PASSPHRASE", "not-the-passphrase")
    body = harness.compose(OLD, arches=ARCHES)
    since = log_length(harness)
    result = harness.replay(body)
    assert result.code == 2
    assert "SIGNING_KEY: cannot decrypt it: wrong passphrase" in result.err
    assert "not-the-passphrase" not in result.out + result.err
    assert keys.passphrase not in result.out + result.err
    lines = harness.registries[0].log_text().splitlines()[since:]
    assert not [line for line in lines if harness.namespace in line], "the registry was used"

    other = make_key_pair(harness.tmp / "other")
    monkeypatch.setenv("SIGNING_KEY", other.private_pem)
    monkeypatch.setenv("SIGNING_PASSPHRASE", other.passphrase)
    result = harness.replay(body)
    assert result.code == 2
    assert "is not the private key of public_key" in result.err


def failing_signer(harness: Harness, keys: KeyPair, fails_for: str) -> str:
    """A command signer with the right key that fails for payloads naming ``fails_for``."""
    from cryptography.hazmat.primitives import serialization

    key_file = harness.tmp / "signer.pem"
    key_file.write_bytes(
        keys.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    script = harness.tmp / "signer.py"
    script.write_text(
        "import sys\n"
        "from cryptography.hazmat.primitives import hashes, serialization\n"
        "from cryptography.hazmat.primitives.asymmetric import ec\n"
        "payload = sys.stdin.buffer.read()\n"
        f"if {fails_for.encode()!r} in payload:\n"
        "    sys.exit('signing service unavailable')\n"
        f"key = serialization.load_pem_private_key(open({str(key_file)!r}, 'rb').read(), None)\n"
        "sys.stdout.buffer.write(key.sign(payload, ec.ECDSA(hashes.SHA256())))\n"
    )
    return json.dumps([sys.executable, str(script)])


@pytest.mark.parametrize(
    ("fails_for", "unmoved", "moved"),
    [
        # A per-arch tag whose signature failed stays, and (an arch failed) the index tags hold.
        (":41-aarch64", ("41-aarch64", "41", "latest"), ("41-x86_64",)),
        # An index tag whose signatures failed stays; the other moves.
        (':41"', ("41",), ("41-x86_64", "41-aarch64", "latest")),
    ],
)
def test_a_signing_failure_fails_that_tag_like_a_failed_push(
    harness, keys, monkeypatch, fails_for, unmoved, moved
):
    enable_signing(
        harness,
        keys,
        monkeypatch,
        command=failing_signer(harness, keys, fails_for),
        command_timeout="30",
    )
    harness.retry = {"attempts": 1, "initial_delay": 0, "max_delay": 0}
    result = harness.replay(harness.compose(OLD, arches=ARCHES))
    assert result.code == 1, result.err
    assert "signing failed" in result.err
    assert "signing service unavailable" in result.err
    for tag in unmoved:
        assert harness.digest(TOOLBOX, tag) is None, f"{tag} moved without its signatures"
    for tag in moved:
        assert harness.digest(TOOLBOX, tag) is not None, f"{tag} did not move"


def test_the_audit_reports_unsigned_tags_and_never_counts_sig_tags(harness, keys, monkeypatch):
    enable_signing(harness, keys, monkeypatch)
    assert harness.replay(harness.compose(OLD, arches=ARCHES)).code == 0
    assert any(tag.endswith(".sig") for tag in harness.registries[0].tags(harness.repo(TOOLBOX)))
    result = harness.run("audit", "--config", str(harness.config()), "--json")
    assert result.code == 0, result.out + result.err
    document = json.loads(result.out)
    assert document["findings"] == []

    # The next compose is published with signing off (public_key still set, for the audit).
    harness.extra_config = harness.extra_config.replace("enabled = true", "enabled = false")
    assert harness.replay(harness.compose("Fedora-41-20241026.0", arches=ARCHES)).code == 0
    result = harness.run("audit", "--config", str(harness.config()), "--json")
    assert result.code == 3, result.out + result.err
    document = json.loads(result.out)
    found = {(f["tag"], f["arch"]) for f in document["findings"]}
    assert {f["kind"] for f in document["findings"]} == {"unsigned"}
    assert found == {
        ("41", None),
        ("41", "x86_64"),
        ("41", "aarch64"),
        ("latest", None),
        ("latest", "x86_64"),
        ("latest", "aarch64"),
        ("41-x86_64", "x86_64"),
        ("41-aarch64", "aarch64"),
    }
    assert all("no signature" in f["summary"] for f in document["findings"])
    assert document["counts"]["unsigned"] == 8


def test_a_writer_that_overwrote_our_signatures_is_caught_and_nothing_is_lost(harness, keys):
    """Another process rewrites the .sig right after our write, from what it read before it
    (a lost update): our read-back misses our signature and writes again, keeping theirs."""
    from fedora_container_sync.config.settings import RegistrySettings, RetrySettings
    from fedora_container_sync.registry.client import RegistryClient
    from fedora_container_sync.signing.keys import KeySigner
    from fedora_container_sync.signing.payload import (
        identity,
        make_payload,
        new_layer,
        signature_manifest,
    )
    from fedora_container_sync.signing.setup import Signing
    from fedora_container_sync.signing.status import signed_claims
    from fedora_container_sync.signing.store import ensure_signed, read_signatures

    url = f"{harness.registries[0].host}/{harness.namespace}"
    settings = RegistrySettings(url=url, tls_verify=False)
    digest = "sha256:" + "5" * 64
    signing = Signing(KeySigner(keys.key), keys.key.public_key())
    ours, theirs = identity(url, TOOLBOX, "41"), identity(url, TOOLBOX, "latest")
    with RegistryClient(settings, timeout=10, retry=RetrySettings(attempts=1)) as client:
        # Their manifest, made from an empty .sig, holding only their signature.
        payload = make_payload(theirs, digest, creator="them", compose_id=None)
        their_layer = new_layer(payload, KeySigner(keys.key).sign(payload))
        their_body, their_config = signature_manifest([their_layer])
        put = client.manifest_put
        overwrites = []

        def racing_put(repository, reference, media_type, body):
            digest_put = put(repository, reference, media_type, body)
            if reference.endswith(".sig") and not overwrites:
                client.blob_put(repository, payload)
                client.blob_put(repository, their_config)
                overwrites.append(put(repository, reference, media_type, their_body))
            return digest_put

        client.manifest_put = racing_put  # type: ignore[method-assign]
        signed = ensure_signed(client, TOOLBOX, {digest: [ours]}, signing, compose_id=None)
        assert overwrites, "the other writer did not run"
        # Ours written twice (once lost, once kept), counted once; none there before.
        assert signed.written == {(digest, ours)} and signed.present == frozenset()
        found = read_signatures(client, TOOLBOX, digest)
        assert signed_claims(found.checked(signing.public_key), digest) == {ours, theirs}
        # And again: nothing to do.
        client.manifest_put = put  # type: ignore[method-assign]
        again = ensure_signed(client, TOOLBOX, {digest: [ours]}, signing, compose_id=None)
        assert again.written == frozenset() and again.present == {(digest, ours)}


def test_the_consumer_refuses_a_wrong_passphrase_at_start(bus, keys):
    config = bus.config(
        settings="[consumer_config.container.signing]\n"
        f'enabled = true\npublic_key = "{keys.public_path}"\n'
    )
    consumer = bus.consumer(
        config, env={"SIGNING_KEY": keys.private_pem, "SIGNING_PASSPHRASE": "wrong-phrase"}
    )
    code = consumer.proc.wait(timeout=60)
    output = consumer.output()
    assert code == 2, output
    (error,) = [line for line in output.splitlines() if "cannot start" in line]
    assert "SIGNING_KEY: cannot decrypt it: wrong passphrase" in error
    assert "wrong-phrase" not in output
    assert "Traceback" not in output


def test_a_carried_forward_entry_gets_the_identities_it_lacks(
    harness, keys, monkeypatch, tools, tmp_path
):
    # Published unsigned; the next compose lacks aarch64, and carry-forward keeps the old one.
    assert harness.replay(harness.compose(OLD, arches=ARCHES)).code == 0
    enable_signing(harness, keys, monkeypatch)
    harness.extra_config = 'gate_policy = "carry-forward"\n' + harness.extra_config
    result = harness.replay(harness.compose("Fedora-41-20241026.0", arches=("x86_64",)))
    assert result.code == 0, result.err
    client = Client(tools, harness, keys.public_path, tmp_path / "client")
    client.accepts("41", "--override-arch", "arm64")  # the carried entry, signed for :41
    client.accepts("latest", "--all")
    client.accepts("41-x86_64")
    client.refuses("41-aarch64")  # not this compose's tag: left as it was (the audit says so)


@pytest.mark.parametrize("maker", ["cosign", "skopeo"])
def test_keys_made_by_cosign_and_skopeo_are_read(tools, tmp_path, maker):
    """What an operator makes with ``cosign generate-key-pair`` (ENCRYPTED SIGSTORE PRIVATE
    KEY) or ``skopeo generate-sigstore-key`` (ENCRYPTED COSIGN PRIVATE KEY) is what we read."""
    from fedora_container_sync.signing.keys import load_private_key, load_public_key, same_key

    passphrase = "operator-passphrase"
    if maker == "cosign":
        subprocess.run(
            [str(tools / "cosign"), "generate-key-pair"],
            cwd=tmp_path,
            env={"COSIGN_PASSWORD": passphrase, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            check=True,
            capture_output=True,
            timeout=120,
        )
        private, public = tmp_path / "cosign.key", tmp_path / "cosign.pub"
    else:
        (tmp_path / "passphrase").write_text(passphrase)
        subprocess.run(
            [
                str(tools / "skopeo"),
                "generate-sigstore-key",
                "--output-prefix",
                str(tmp_path / "key"),
                "--passphrase-file",
                str(tmp_path / "passphrase"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        private, public = tmp_path / "key.private", tmp_path / "key.pub"
    label = "SIGSTORE" if maker == "cosign" else "COSIGN"
    assert f"BEGIN ENCRYPTED {label} PRIVATE KEY" in private.read_text()
    key = load_private_key(private.read_text(), passphrase)
    assert same_key(key.public_key(), load_public_key(public.read_bytes()))


def test_the_signing_key_and_passphrase_never_leak(harness, keys, monkeypatch, tmp_path):
    """Not in what a run prints or logs (DEBUG, httpx included), not in skopeo's argv or
    environment, not in any file the runs leave: with a success, a dry run and a failure."""
    import logging
    import shutil

    from test_secrets import WRAPPER, Capture

    from fedora_container_sync import cli

    handler = Capture()
    for name in ("fedora_container_sync", "httpx", "httpcore"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        logs = tmp_path / "skopeo-wrapper"
        logs.mkdir()
        wrapper = tmp_path / "skopeo"
        wrapper.write_text(WRAPPER.format(log=logs, skopeo=shutil.which("skopeo")))
        wrapper.chmod(0o755)
        enable_signing(harness, keys, monkeypatch)
        harness.extra_config = f'skopeo = "{wrapper}"\n' + harness.extra_config
        body = harness.compose(OLD, arches=ARCHES)
        results = [
            harness.replay(body, args=["-v", "--dry-run"]),
            harness.replay(body, args=["-v"]),
        ]
        assert [r.code for r in results] == [0, 0], results[-1].err
        monkeypatch.setenv("SIGNING_PASSPHRASE", keys.passphrase + "x")
        results.append(harness.replay(body, args=["-v"]))
        assert results[-1].code == 2
    finally:
        for name in ("fedora_container_sync", "httpx", "httpcore"):
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(logging.NOTSET)
    key_body = "".join(keys.private_pem.splitlines()[1:-1])
    secrets = [keys.passphrase, key_body[:40], key_body[-40:]]
    assert cli
    assert any("signed" in line for line in handler.lines), "no log captured: proves nothing"
    texts = [r.out + r.err for r in results] + ["\n".join(handler.lines)]
    texts += [path.read_text(errors="replace") for path in logs.iterdir()]
    assert (logs / "env").exists(), "skopeo did not run: the test would prove nothing"
    for path in (tmp_path / "work").rglob("*"):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    leaks = [secret for secret in secrets for text in texts if secret in text]
    assert leaks == []


def test_sig_tags_are_not_compared_across_registries(
    tmp_path,
    served_root,
    compose_server,
    registry,
    second_registry,
    namespace,
    capsys,
    keys,
    monkeypatch,
):
    """Each registry's signatures name that registry, so their .sig tags differ by
    construction: the audit's cross-registry comparison never sees them."""
    harness = Harness(
        tmp_path, served_root, compose_server, [registry, second_registry], namespace, capsys
    )
    enable_signing(harness, keys, monkeypatch)
    assert harness.replay(harness.compose(OLD, arches=ARCHES)).code == 0
    sigs = [
        {t for t in r.tags(harness.repo(TOOLBOX)) if t.endswith(".sig")}
        for r in (registry, second_registry)
    ]
    assert sigs[0] and sigs[0] == sigs[1]  # same digests...
    first, second = (
        r.get_manifest(harness.repo(TOOLBOX), sorted(sigs[0])[0])
        for r in (registry, second_registry)
    )
    assert first and second and first[1] != second[1]  # ...different signatures
    result = harness.run("audit", "--config", str(harness.config()), "--json")
    assert result.code == 0, result.out + result.err
    assert json.loads(result.out)["findings"] == []


def test_rotating_the_key_adds_signatures_by_the_new_one_and_moves_no_tag(
    harness, keys, monkeypatch, tools, tmp_path
):
    body = harness.compose(OLD, arches=ARCHES)
    enable_signing(harness, keys, monkeypatch)
    assert harness.replay(body).code == 0
    tags = {tag: harness.digest(TOOLBOX, tag) for tag in ("41", "latest", "41-x86_64")}
    new = make_key_pair(tmp_path / "new")
    enable_signing(harness, new, monkeypatch)
    assert harness.replay(body).code == 0
    assert {tag: harness.digest(TOOLBOX, tag) for tag in tags} == tags
    for pair, name in ((keys, "old"), (new, "new")):
        client = Client(tools, harness, pair.public_path, tmp_path / name)
        client.accepts("41-x86_64")
        client.accepts("41", "--all")
    # A client that lists both keys (keyPaths), as during the overlap.
    both = Client(tools, harness, new.public_path, tmp_path / "both")
    policy = json.loads((both.directory / "policy.json").read_text())
    (rule,) = next(iter(policy["transports"]["docker"].values()))
    del rule["keyPath"]
    rule["keyPaths"] = [str(keys.public_path), str(new.public_path)]
    (both.directory / "policy.json").write_text(json.dumps(policy))
    both.accepts("latest", "--all")
