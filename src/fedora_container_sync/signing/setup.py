"""Signing's configuration at start (I/O): the public key, the private key from the
credentials (or the command signer's self-test), and whether they match.

:func:`check_signing` runs before a replay or the consumer does anything: a bad key, a wrong
passphrase or a key that is not ``public_key``'s is a :class:`ConfigError` (exit 2). The
decrypted key is kept in memory for the process (:func:`signing_for`), never written anywhere.

With signing off nothing here imports ``cryptography`` (keys.py): about 7 MB of a replay's
peak RSS, for nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import __version__
from ..config.load import read_credential
from ..config.settings import Settings, SigningSettings
from ..errors import ConfigError, SyncError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from .keys import Signer

SECTION = "consumer_config.container.signing"
#: What the command signer's self-test signs at start.
PROBE = b'{"fedora-container-sync":"signer self-test"}'


@dataclass(frozen=True)
class Signing:
    """What a run signs with: the signer, the public key every signature must verify with,
    and the ``creator`` written into every payload."""

    signer: Signer
    public_key: ec.EllipticCurvePublicKey
    creator: str = f"fedora-container-sync {__version__}"


def public_key_of(settings: SigningSettings) -> ec.EllipticCurvePublicKey:
    """The configured ``public_key``, or a ConfigError naming the file and what is wrong."""
    from .keys import KeyProblem, load_public_key

    if settings.public_key is None:
        raise ConfigError(f"{SECTION}: public_key is not set")
    where = f"{SECTION}: public_key {settings.public_key}"
    try:
        text = settings.public_key.read_bytes()
    except OSError as error:
        raise ConfigError(f"{where}: unreadable: {error.strerror}") from None
    try:
        return load_public_key(text)
    except KeyProblem as problem:
        raise ConfigError(f"{where}: {problem}") from None


def secret_names(settings: Settings) -> tuple[str, ...]:
    """The environment variables holding the signing key and passphrase."""
    prefix = settings.signing.credential_prefix
    return (f"{prefix}KEY", f"{prefix}PASSPHRASE")


def load_signing(settings: Settings, environ: Mapping[str, str] | None = None) -> Signing:
    """Build the signer and check it against ``public_key``; ConfigError on any problem."""
    from .keys import CommandSigner, KeyProblem, KeySigner, load_private_key, same_key, verify

    config = settings.signing
    env = os.environ if environ is None else environ
    public = public_key_of(config)
    signer: Signer
    if config.command:
        signer = CommandSigner(
            config.command,
            timeout=config.command_timeout,
            hide_env=(*secret_names(settings), *_registry_secrets(settings)),
            environ=env,
        )
        try:
            signature = signer.sign(PROBE)
        except SyncError as error:
            raise ConfigError(f"{SECTION}: the signer's self-test failed: {error}") from None
        if not verify(public, PROBE, signature):
            raise ConfigError(
                f"{SECTION}: the signer's self-test signature does not verify with public_key "
                f"{config.public_key} (another key?)"
            )
        return Signing(signer, public)
    key_name, passphrase_name = secret_names(settings)
    values = {name: read_credential(name, env, owner=SECTION) for name in secret_names(settings)}
    missing = [name for name in (key_name, passphrase_name) if not values[name]]
    if missing:
        raise ConfigError(
            f"{SECTION}: enabled, but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set in the environment or "
            "$CREDENTIALS_DIRECTORY"
        )
    try:
        key = load_private_key(values[key_name], values[passphrase_name])
    except KeyProblem as problem:
        raise ConfigError(f"{SECTION}: {key_name}: {problem}") from None
    key_signer = KeySigner(key)
    if not same_key(key_signer.public_key(), public):
        raise ConfigError(
            f"{SECTION}: {key_name} is not the private key of public_key {config.public_key}"
        )
    return Signing(key_signer, public)


def _registry_secrets(settings: Settings) -> tuple[str, ...]:
    return tuple(
        f"{registry.credential_prefix}{suffix}"
        for registry in settings.registries
        if registry.credential_prefix
        for suffix in ("USER", "PASSWORD")
    )


_cache_lock = threading.Lock()
_cache: dict[int, tuple[Settings, Signing]] = {}


def check_signing(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """At start: fail now (ConfigError) when signing is enabled and its key is not usable."""
    if settings.signing.enabled:
        _remember(settings, load_signing(settings, environ))


def signing_for(settings: Settings) -> Signing | None:
    """The run's signer: None when signing is off; loaded once per settings object."""
    if not settings.signing.enabled:
        return None
    with _cache_lock:
        found = _cache.get(id(settings))
        if found is not None and found[0] is settings:
            return found[1]
    signing = load_signing(settings)
    _remember(settings, signing)
    return signing


def _remember(settings: Settings, signing: Signing) -> None:
    with _cache_lock:
        if len(_cache) > 16:
            _cache.clear()
        _cache[id(settings)] = (settings, signing)
