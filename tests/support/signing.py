"""Keys for the signing tests: ECDSA P-256 pairs, written the way cosign writes them
(scrypt + NaCl secretbox around PKCS#8, in an ``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM), and
Debian 13's skopeo and cosign (``tests/tools/debian13-sigstore.sh``) for client-side checks."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nacl.secret
import nacl.utils
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("DEBIAN13_SIGSTORE_DIR", ROOT / ".cache" / "debian13"))
FETCH = ROOT / "tests" / "tools" / "debian13-sigstore.sh"


def cosign_pem(
    key: ec.EllipticCurvePrivateKey,
    passphrase: str,
    *,
    n: int = 1 << 15,
    label: str = "ENCRYPTED SIGSTORE PRIVATE KEY",
) -> str:
    """``key`` encrypted as cosign does."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = nacl.utils.random(32)
    secret = Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(passphrase.encode())
    nonce = nacl.utils.random(24)
    sealed = nacl.secret.SecretBox(secret).encrypt(der, nonce).ciphertext
    envelope = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": n, "r": 8, "p": 1},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    body = base64.encodebytes(json.dumps(envelope).encode()).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    passphrase: str
    private_pem: str
    public_path: Path


def make_key_pair(
    directory: Path,
    name: str = "cosign",
    passphrase: str = "s3cret-phrase",  # noqa: S107
) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    public_path = directory / f"{name}.pub"
    public_path.write_bytes(public_pem(key))
    return KeyPair(key, passphrase, cosign_pem(key, passphrase), public_path)


def debian13_tools() -> Path:
    """The directory of Debian 13's ``skopeo`` and ``cosign`` wrappers, fetched if missing.
    Skips when they cannot be had, except under CI=true, where that fails."""
    skopeo, cosign = TOOLS / "bin" / "skopeo", TOOLS / "bin" / "cosign"
    if not (skopeo.exists() and cosign.exists()) and shutil.which("apt-get"):
        subprocess.run([str(FETCH), str(TOOLS)], check=False, capture_output=True, timeout=600)
    if skopeo.exists() and cosign.exists():
        return TOOLS / "bin"
    reason = (
        f"needs Debian 13's skopeo and cosign in {TOOLS} (make test fetches them with "
        f"{FETCH.relative_to(ROOT)}; Debian 12's skopeo has sigstore patched out)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
