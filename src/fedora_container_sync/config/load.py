"""Reading the configuration (I/O): the TOML file, credentials from the environment or
systemd's ``$CREDENTIALS_DIRECTORY``, and the certificates of ``cert_dir``.

:func:`load_settings` validates ``[consumer_config.container]`` (:mod:`.settings`) and the rest
of the file, the keys fedora-messaging reads (:mod:`.bus`), so that a typo there stops a run
before it does anything rather than after it published. Nothing here touches the network.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from .bus import check_bus_document
from .cgroups import allowed_cpus
from .settings import Credentials, RegistrySettings, Settings, settings_from_document

DEFAULT_CONFIG_PATH = Path("/etc/fedora-messaging/config.toml")
CONFIG_ENV = "FEDORA_MESSAGING_CONF"
#: systemd's LoadCredential= puts credential files here
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"


def check_cert_dir(registry: RegistrySettings) -> None:
    """Fail now, naming it, if ``cert_dir`` is missing, not a directory, or holds a
    certificate or key that cannot be read or loaded.

    Left alone, every TLS connection to the registry would fail (and be retried) later.
    """
    if registry.cert_dir is None:
        return
    where = f"registry {registry.url}: cert_dir {registry.cert_dir}"
    try:
        entries = sorted(registry.cert_dir.iterdir())
    except FileNotFoundError:
        raise ConfigError(f"{where}: not found") from None
    except NotADirectoryError:
        raise ConfigError(f"{where}: not a directory") from None
    except OSError as error:
        raise ConfigError(f"{where}: unreadable: {error.strerror}") from None
    from ..net.tls import tls_context

    for entry in entries:
        if entry.suffix not in (".crt", ".cert", ".key"):
            continue
        try:
            with entry.open("rb"):
                pass
        except OSError as error:
            raise ConfigError(f"{where}: {entry.name}: unreadable: {error.strerror}") from None
    try:
        tls_context(registry.cert_dir, verify=registry.tls_verify)
    except (ssl.SSLError, OSError) as error:
        reason = " ".join(str(error).split())
        raise ConfigError(f"{where}: not usable certificates or keys: {reason}") from None


def registry_credentials(
    registry: RegistrySettings, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """Username and password named ``<prefix>USER`` / ``<prefix>PASSWORD``, if configured.

    Each comes from the environment variable of that name or, failing that, from the file
    of that name in ``$CREDENTIALS_DIRECTORY`` (systemd's ``LoadCredential=``).
    """
    if not registry.credential_prefix:
        return None
    env = os.environ if environ is None else environ
    user_var = f"{registry.credential_prefix}USER"
    password_var = f"{registry.credential_prefix}PASSWORD"
    values = {name: _secret(name, env, registry.url) for name in (user_var, password_var)}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigError(
            f"registry {registry.url}: credential_prefix is {registry.credential_prefix!r} but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set "
            "in the environment or $CREDENTIALS_DIRECTORY"
        )
    return Credentials(values[user_var], values[password_var])


def _secret(name: str, env: Mapping[str, str], registry: str) -> str:
    """``env[name]``, else the content of ``$CREDENTIALS_DIRECTORY/name`` (one line), else ''."""
    if env.get(name):
        return env[name]
    directory = env.get(CREDENTIALS_DIRECTORY_ENV)
    if not directory:
        return ""
    path = Path(directory) / name
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"registry {registry}: credential file {path}: {reason}") from None


def check_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Fail now, with a clear line, if a registry's credentials are not in the environment
    or its ``cert_dir`` (client certificates, CAs) cannot be read."""
    for registry in settings.registries:
        registry_credentials(registry, environ)
        check_cert_dir(registry)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the config file is: ``--config``, then ``$FEDORA_MESSAGING_CONF``, then /etc."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_settings(path: Path) -> Settings:
    """Read and validate ``[consumer_config.container]`` from the TOML file at ``path``."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path}: is a directory") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path}: invalid TOML: {error}") from None
    settings = settings_from_document(document, source=str(path), cpus=allowed_cpus())
    check_bus_document(document, source=str(path))
    if any(key.lower() != "consumer_config" for key in document):
        _check_with_fedora_messaging(path)
    return settings


def _check_with_fedora_messaging(path: Path) -> None:
    """fedora-messaging's own checks of the file (unknown top-level keys, queues, bindings,
    client properties, monitoring), on a config object of our own."""
    from fedora_messaging import config, exceptions

    try:
        config.LazyConfig().load_config(str(path))
    except exceptions.ConfigurationException as error:
        reason = " ".join(str(error).split())
        raise ConfigError(f"config file {path}: {reason}") from None
