"""Keys and signers: cosign's encrypted private keys, ECDSA P-256 signatures, and the
``command`` signer (an external program: payload on stdin, signature on stdout).

cosign writes its private key as a PEM block ``ENCRYPTED SIGSTORE PRIVATE KEY`` (cosign 2) or
``ENCRYPTED COSIGN PRIVATE KEY`` (cosign 1, ``skopeo generate-sigstore-key``) around a JSON
envelope: scrypt derives a 32-byte key from the passphrase, and NaCl's secretbox
(XSalsa20-Poly1305) seals the PKCS#8 DER of the private key. ``cryptography`` has no
XSalsa20, hence PyNaCl (libsodium) for that one step. A PKCS#8 ``ENCRYPTED PRIVATE KEY`` is
read as well.

Nothing here prints, logs or puts into an error the key or the passphrase.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import PermanentError, TransientError

COSIGN_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
_PEM = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\s*"
    r"(?P<body>[A-Za-z0-9+/=\s]+?)\s*-----END (?P=label)-----"
)
MAX_KEY_TEXT = 64 << 10
MAX_SIGNATURE_BYTES = 1 << 10
#: Bounds on the scrypt parameters a key file may ask for (cosign writes N=32768 or 65536,
#: r=8, p=1): at most 1 GiB of memory.
_MAX_SCRYPT_N, _MAX_SCRYPT_R, _MAX_SCRYPT_P = 1 << 20, 8, 4


class KeyProblem(ValueError):
    """A key that cannot be used; the message names what is wrong, never the key."""


class SigningError(PermanentError):
    """A signature could not be made, or is not what ``public_key`` verifies."""


class SignerUnavailable(TransientError):
    """The signer did not answer (the command failed or timed out): may work later."""


class Signer(Protocol):
    def sign(self, payload: bytes) -> bytes:
        """The DER ECDSA-P256-SHA256 signature of ``payload``."""


def load_public_key(text: bytes) -> ec.EllipticCurvePublicKey:
    """A PEM public key; ECDSA P-256 only (what cosign and containers/image use)."""
    try:
        key = serialization.load_pem_public_key(text)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyProblem("not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyProblem("not an ECDSA P-256 public key")
    return key


def same_key(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


def verify(key: ec.EllipticCurvePublicKey, payload: bytes, signature: bytes) -> bool:
    """True when ``signature`` (DER) is ``key``'s signature of ``payload``."""
    try:
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def load_private_key(text: str, passphrase: str) -> ec.EllipticCurvePrivateKey:
    """Decrypt a cosign-format or PKCS#8 encrypted PEM private key with ``passphrase``."""
    if len(text) > MAX_KEY_TEXT:
        raise KeyProblem(f"larger than {MAX_KEY_TEXT} bytes")
    match = _PEM.search(text)
    if not match:
        raise KeyProblem("not a PEM block")
    label = match.group("label")
    if label in COSIGN_LABELS:
        der = _open_cosign(match.group("body"), passphrase.encode())
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyProblem("the decrypted key is not PKCS#8") from None
    elif label == "ENCRYPTED PRIVATE KEY":
        try:
            key = serialization.load_pem_private_key(match.group(0).encode(), passphrase.encode())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyProblem("cannot decrypt it: wrong passphrase, or not a usable key") from None
    else:
        raise KeyProblem(f"PEM block {label[:40]!r} is not an encrypted private key")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyProblem("not an ECDSA P-256 private key")
    return key


def _open_cosign(body: str, passphrase: bytes) -> bytes:
    try:
        envelope = json.loads(base64.b64decode("".join(body.split()), validate=True))
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        ciphertext = base64.b64decode(envelope["ciphertext"], validate=True)
        kdf_name, cipher_name = kdf["name"], cipher["name"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise KeyProblem("not a cosign key envelope") from None
    if kdf_name != "scrypt" or cipher_name != "nacl/secretbox":
        shown = f"{str(kdf_name)[:20]}, {str(cipher_name)[:20]}"
        raise KeyProblem(f"unsupported key encryption ({shown})")
    if not (1 < n <= _MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= _MAX_SCRYPT_R):
        raise KeyProblem("scrypt parameters out of bounds")
    if not 0 < p <= _MAX_SCRYPT_P or len(nonce) != 24:
        raise KeyProblem("scrypt parameters or nonce out of bounds")
    import nacl.exceptions
    import nacl.secret

    secret = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)
    try:
        return nacl.secret.SecretBox(secret).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise KeyProblem("cannot decrypt it: wrong passphrase") from None


class KeySigner:
    """Signs with a private key held in memory. ``repr`` never shows it."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "KeySigner(<private key>)"

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, payload: bytes) -> bytes:
        return self._key.sign(payload, ec.ECDSA(hashes.SHA256()))


class CommandSigner:
    """Runs ``argv`` per signature: the payload on stdin, the signature on stdout (DER, or its
    base64), within ``timeout`` seconds; the environment without ``hide_env``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        hide_env: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        env = dict(os.environ if environ is None else environ)
        self._env = {k: v for k, v in env.items() if k not in set(hide_env)}

    def sign(self, payload: bytes) -> bytes:
        name = os.path.basename(self.argv[0])
        try:
            done = subprocess.run(
                self.argv,
                input=payload,
                capture_output=True,
                timeout=self.timeout,
                env=self._env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SignerUnavailable(f"signer {name}: no answer within {self.timeout:g} s") from None
        except OSError as error:
            raise SignerUnavailable(f"signer {name}: cannot run: {error.strerror}") from None
        if done.returncode != 0:
            last = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            raise SignerUnavailable(
                f"signer {name}: exit status {done.returncode}: {last[:200]}".rstrip(": ")
            )
        return signature_from_output(done.stdout, name)


def signature_from_output(output: bytes, name: str) -> bytes:
    """A DER signature as a signer printed it: raw DER, or base64 of it."""
    if len(output) > 4 * MAX_SIGNATURE_BYTES:
        raise SigningError(f"signer {name}: output too large for a signature")
    if output[:1] == b"\x30":
        return output
    try:
        decoded = base64.b64decode(b"".join(output.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SigningError(f"signer {name}: output is neither DER nor base64") from None
    if decoded[:1] != b"\x30":
        raise SigningError(f"signer {name}: output is not a DER signature")
    return decoded
