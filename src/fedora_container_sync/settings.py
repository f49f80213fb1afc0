"""The application's settings: ``[consumer_config.container]`` of the fedora-messaging TOML file.

The same file serves ``fedora-messaging consume`` and ``fedora-container-sync replay``; this
module validates our table with pydantic (unknown keys are errors) and hands out a frozen
:class:`Settings` object. :func:`load_settings` checks the rest of the file too, the keys
fedora-messaging reads (:func:`check_bus_document`), so that a typo there stops a run before it
does anything rather than after it published. Nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .archive import DEFAULT_MAX_RATIO, DEFAULT_MAX_SIZE
from .errors import ConfigError
from .oci.platforms import FEDORA_PLATFORMS
from .urls import URLRefused, parse_url

DEFAULT_CONFIG_PATH = Path("/etc/fedora-messaging/config.toml")
CONFIG_ENV = "FEDORA_MESSAGING_CONF"
#: systemd's LoadCredential= puts credential files here
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
SECTION = "consumer_config.container"
#: Limits on what the network may cost (see README, "What is refused"): real composeinfo.json
#: and images.json files are a few hundred KiB to a few MiB; kojipkgs serves Fedora's
#: multi-GiB images at tens of MiB/s inside the data centre.
DEFAULT_HTTP_DEADLINE = 300.0
DEFAULT_MAX_METADATA_BYTES = 16 << 20
DEFAULT_MIN_DOWNLOAD_RATE = 256 << 10

# host[:port][/namespace...]; lower-case host names, registry path components per the
# distribution spec.
_REGISTRY_URL = re.compile(
    r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<namespace>(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)$"
)
_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Credentials:
    """A username and password. ``repr`` and ``str`` never show the password."""

    __slots__ = ("password", "username")

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__


class RegistrySettings(_Model):
    """One ``[[consumer_config.container.registries]]`` entry."""

    url: str
    credential_prefix: str | None = None
    cert_dir: Path | None = None
    tls_verify: bool = True

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("must be host[:port][/namespace], without a scheme")
        if not _REGISTRY_URL.match(value):
            raise ValueError("must be host[:port][/namespace] with a lower-case namespace")
        return value.rstrip("/")

    @field_validator("cert_dir", mode="before")
    @classmethod
    def _cert_dir_from_str(cls, value: object) -> object:
        return Path(value) if isinstance(value, str) else value

    @property
    def host(self) -> str:
        """``host[:port]``: where the registry API answers."""
        return self.url.split("/", 1)[0]

    @property
    def namespace(self) -> str:
        """The path prepended to every repository name ('' for none)."""
        return self.url.split("/", 1)[1] if "/" in self.url else ""

    def repository_path(self, repository: str) -> str:
        """The repository's full name inside the registry (namespace included)."""
        return f"{self.namespace}/{repository}" if self.namespace else repository

    def check_cert_dir(self) -> None:
        """Fail now, naming it, if ``cert_dir`` is missing, not a directory, or holds a
        certificate or key that cannot be read or loaded.

        Left alone, every TLS connection to the registry would fail (and be retried) later.
        """
        if self.cert_dir is None:
            return
        where = f"registry {self.url}: cert_dir {self.cert_dir}"
        try:
            entries = sorted(self.cert_dir.iterdir())
        except FileNotFoundError:
            raise ConfigError(f"{where}: not found") from None
        except NotADirectoryError:
            raise ConfigError(f"{where}: not a directory") from None
        except OSError as error:
            raise ConfigError(f"{where}: unreadable: {error.strerror}") from None
        from .registry.client import ssl_context

        for entry in entries:
            if entry.suffix not in (".crt", ".cert", ".key"):
                continue
            try:
                with entry.open("rb"):
                    pass
            except OSError as error:
                raise ConfigError(f"{where}: {entry.name}: unreadable: {error.strerror}") from None
        try:
            ssl_context(self.cert_dir, verify=self.tls_verify)
        except (ssl.SSLError, OSError) as error:
            reason = " ".join(str(error).split())
            raise ConfigError(f"{where}: not usable certificates or keys: {reason}") from None

    def credentials(self, environ: Mapping[str, str] | None = None) -> Credentials | None:
        """Username and password named ``<prefix>USER`` / ``<prefix>PASSWORD``, if configured.

        Each comes from the environment variable of that name or, failing that, from the file
        of that name in ``$CREDENTIALS_DIRECTORY`` (systemd's ``LoadCredential=``).
        """
        if not self.credential_prefix:
            return None
        env = os.environ if environ is None else environ
        user_var = f"{self.credential_prefix}USER"
        password_var = f"{self.credential_prefix}PASSWORD"
        values = {name: _secret(name, env, self.url) for name in (user_var, password_var)}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ConfigError(
                f"registry {self.url}: credential_prefix is {self.credential_prefix!r} but "
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


class Releases(_Model):
    """Which release numbers are 'current stable' (tag ``latest``) and Rawhide (tag ``rawhide``).

    Each number left out (or the whole table) is looked up in Bodhi when a compose needs it.
    """

    latest: int | None = Field(default=None, gt=0)
    rawhide: int | None = Field(default=None, gt=0)


class BodhiSettings(_Model):
    """``[consumer_config.container.bodhi]``: where release numbers are looked up, when
    ``[releases]`` does not give them."""

    url: str = "https://bodhi.fedoraproject.org"
    cache_seconds: float = Field(default=1200.0, ge=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} must be an http:// or https:// URL")
        return value.rstrip("/")


class ComposeRules(_Model):
    """``[consumer_config.container.compose_rules]``: which composes may move which tags.

    A compose publishes only when its release short name and compose type are listed. A
    pre-release candidate (its label matches ``candidate_label``) never moves ``latest``;
    it moves ``<N>`` and the per-arch tags only when ``candidates_move_version`` is true.
    """

    release_shorts: list[str] = Field(default=["Fedora", "Fedora-IoT"], min_length=1)
    compose_types: list[Literal["production", "nightly", "test", "ci", "development"]] = Field(
        default=["production", "nightly"], min_length=1
    )
    #: Milestone candidates are labelled ``Beta-1.2``, ``RC-1.5``; IoT's routine production
    #: composes carry ``RC-<date>.<n>`` labels, which this deliberately does not match.
    candidate_label: str = r"^(Alpha|Beta|RC)-\d{1,2}\.\d+$"
    candidates_move_version: bool = True

    @field_validator("candidate_label")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return value


class RetrySettings(_Model):
    """``[consumer_config.container.retry]``: how transient failures are retried."""

    attempts: int = Field(default=5, ge=1)
    initial_delay: float = Field(default=1.0, ge=0)
    max_delay: float = Field(default=30.0, ge=0)
    max_total: float = Field(default=600.0, gt=0)


class RequeueSettings(_Model):
    """``[consumer_config.container.requeue]``: how long the consumer waits before it hands a
    transiently failed message back to the broker. The wait doubles with every failure of the
    same message, from ``initial_delay`` up to ``max_delay`` seconds."""

    initial_delay: float = Field(default=30.0, ge=0)
    max_delay: float = Field(default=600.0, ge=0)


class HealthSettings(_Model):
    """``[consumer_config.container.health]``: the consumer's own ``/live`` and ``/ready``
    (see :mod:`.health`), for the OpenShift probes. Absent: no health server."""

    address: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    #: Seconds a compose in progress may go without finishing a step before ``/live`` says
    #: the process is stuck (default: twice ``skopeo_timeout``).
    stuck_after: float | None = Field(default=None, gt=0)

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        return value


class Settings(_Model):
    """Everything under ``[consumer_config.container]``."""

    repos: dict[str, str] = Field(min_length=1)
    registries: list[RegistrySettings] = Field(min_length=1)
    compose_url_allowlist: list[str] = Field(min_length=1)
    gate_policy: Literal["strict", "carry-forward"] = "strict"
    expected_arches: dict[str, list[str]] = Field(default_factory=dict)
    releases: Releases = Releases()
    bodhi: BodhiSettings = BodhiSettings()
    compose_rules: ComposeRules = ComposeRules()
    work_dir: Path = Path("/var/lib/fedora-container-sync")
    publish_amqp_messages: bool = False
    skopeo: str = "skopeo"
    http_timeout: float = Field(default=60.0, gt=0)
    #: Seconds one HTTP request may take as a whole (metadata, registry API, Bodhi).
    http_deadline: float = Field(default=DEFAULT_HTTP_DEADLINE, gt=0)
    #: Bytes composeinfo.json or images.json may have.
    max_metadata_bytes: int = Field(default=DEFAULT_MAX_METADATA_BYTES, gt=0)
    #: Bytes per second an image download must average: its deadline is ``http_deadline``
    #: plus its size at this rate.
    min_download_rate: int = Field(default=DEFAULT_MIN_DOWNLOAD_RATE, gt=0)
    skopeo_timeout: float = Field(default=3600.0, gt=0)
    #: How many downloads, conversions, pushes and registry reads run at once.
    max_parallel: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    #: An image file may decompress to this many times its size (and always to 1 MiB) ...
    max_decompressed_ratio: float = Field(default=DEFAULT_MAX_RATIO, ge=1)
    #: ... and never to more than this many bytes.
    max_decompressed_size: int = Field(default=DEFAULT_MAX_SIZE, gt=0)
    retry: RetrySettings = RetrySettings()
    requeue: RequeueSettings = RequeueSettings()
    health: HealthSettings | None = None

    @property
    def stuck_after(self) -> float:
        """Seconds without a finished step after which a compose in progress is stuck."""
        bound = self.health.stuck_after if self.health else None
        return bound if bound is not None else 2 * self.skopeo_timeout

    @field_validator("work_dir", mode="before")
    @classmethod
    def _work_dir_from_str(cls, value: object) -> object:
        return Path(value) if isinstance(value, str) else value

    @field_validator("repos")
    @classmethod
    def _check_repos(cls, value: dict[str, str]) -> dict[str, str]:
        for subvariant, repository in value.items():
            if not _REPOSITORY.match(repository):
                raise ValueError(
                    f"{subvariant} = {repository!r} is not a valid repository name "
                    "(lower-case letters, digits and . _ - /)"
                )
        return value

    @field_validator("compose_url_allowlist")
    @classmethod
    def _check_allowlist(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not prefix.startswith(("https://", "http://")):
                raise ValueError(f"{prefix!r} must be an http:// or https:// URL prefix")
            try:
                parse_url(prefix)
            except URLRefused as error:
                raise ValueError(f"{prefix!r} {error}") from None
        return value

    @field_validator("expected_arches")
    @classmethod
    def _check_expected_arches(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for repository, arches in value.items():
            if not arches:
                raise ValueError(f"{repository}: lists no arch")
            unknown = [arch for arch in arches if arch not in FEDORA_PLATFORMS]
            if unknown:
                raise ValueError(
                    f"{repository}: {unknown[0]!r} is not a Fedora arch "
                    f"({', '.join(FEDORA_PLATFORMS)})"
                )
            if len(set(arches)) != len(arches):
                raise ValueError(f"{repository}: lists an arch twice")
        return value

    @model_validator(mode="after")
    def _expected_repositories_are_published(self) -> Settings:
        published = set(self.repos.values())
        for repository in self.expected_arches:
            if repository not in published:
                raise ValueError(
                    f"expected_arches names {repository!r}, which no entry of repos publishes"
                )
        return self

    def expected_for(self, repository: str) -> frozenset[str] | None:
        """The arches ``repository``'s index must list, or None: the registry decides."""
        arches = self.expected_arches.get(repository)
        return None if arches is None else frozenset(arches)

    @model_validator(mode="after")
    def _unique_registries(self) -> Settings:
        urls = [registry.url for registry in self.registries]
        duplicates = sorted({url for url in urls if urls.count(url) > 1})
        if duplicates:
            raise ValueError(f"registry {duplicates[0]} is listed twice")
        return self

    def check_credentials(self, environ: Mapping[str, str] | None = None) -> None:
        """Fail now, with a clear line, if a registry's credentials are not in the environment
        or its ``cert_dir`` (client certificates, CAs) cannot be read."""
        for registry in self.registries:
            registry.credentials(environ)
            registry.check_cert_dir()


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
    settings = settings_from_document(document, source=str(path))
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


class _BusTable(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _BusExchange(_BusTable):
    type: str
    durable: bool
    auto_delete: bool
    arguments: dict[str, Any] | None


class _BusQueue(_BusTable):
    durable: bool
    auto_delete: bool
    exclusive: bool
    arguments: dict[str, Any]
    passive: bool = False


class _BusBinding(_BusTable):
    exchange: str
    routing_keys: list[str]
    queue: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)


class _BusQos(_BusTable):
    prefetch_size: int = Field(ge=0)
    prefetch_count: int = Field(ge=0)


class _BusTls(_BusTable):
    ca_cert: str | None
    certfile: str | None
    keyfile: str | None


class _BusMonitoring(_BusTable):
    address: str = ""
    port: int | None = Field(default=None, ge=0, le=65535)


class _BusConsumerConfig(_BusTable):
    container: dict[str, Any] = Field(default_factory=dict)  # validated by Settings


class _BusConfig(_BusTable):
    """The keys fedora-messaging reads (its ``fedora_messaging.config.ConfigType``), each table
    as it uses it: a table in the file replaces fedora-messaging's default whole, so a key left
    out of ``[tls]`` or ``[qos]`` is missing, and a misspelt one unknown."""

    amqp_url: str = ""
    client_properties: dict[str, str] = Field(default_factory=dict)
    publish_exchange: str = ""
    topic_prefix: str = ""
    publish_priority: int | None = None
    passive_declares: bool = False
    exchanges: dict[str, _BusExchange] = Field(default_factory=dict)
    queues: dict[str, _BusQueue] = Field(default_factory=dict)
    bindings: list[_BusBinding] = Field(default_factory=list)
    qos: _BusQos = _BusQos(prefetch_size=0, prefetch_count=10)
    callback: str | None = None
    monitoring: _BusMonitoring = _BusMonitoring()
    consumer_config: _BusConsumerConfig = _BusConsumerConfig()
    tls: _BusTls = _BusTls(ca_cert=None, certfile=None, keyfile=None)
    log_config: dict[str, Any] = Field(default_factory=dict)


def check_bus_document(document: Mapping[str, Any], *, source: str = "config") -> None:
    """Refuse a config whose fedora-messaging part has a key fedora-messaging does not know, a
    value of the wrong type, or a table lacking a key it reads (ConfigError naming it)."""
    lowered = {str(key).lower(): value for key, value in document.items()}
    try:
        _BusConfig.model_validate(lowered)
    except ValidationError as error:
        raise ConfigError(f"{source}: {describe_validation_error(error, '')}") from None


def settings_from_document(document: Mapping[str, Any], *, source: str = "config") -> Settings:
    """Validate the ``consumer_config.container`` table of an already-parsed config."""
    consumer_config = document.get("consumer_config")
    table = consumer_config.get("container") if isinstance(consumer_config, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: no [{SECTION}] table")
    try:
        return Settings.model_validate(table)
    except ValidationError as error:
        raise ConfigError(f"{source}: {describe_validation_error(error, SECTION)}") from None


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """Turn pydantic's report into one line that names each offending key."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        kind = item["type"]
        if kind == "extra_forbidden":
            problems.append(f"{location}: unknown key")
        elif kind == "missing":
            problems.append(f"{location}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{location}: {message}")
    return "; ".join(problems)
