"""The application's settings: ``[consumer_config.container]`` of the fedora-messaging TOML file,
as a frozen pydantic model. Pure.

The same file serves ``fedora-messaging consume`` and ``fedora-container-sync replay``; this
module validates our table (unknown keys are errors) and hands out a frozen :class:`Settings`
object. Reading the file, the environment and the credentials is :mod:`.load`'s; the keys
fedora-messaging reads are checked by :mod:`.bus`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..compose.decompress import DEFAULT_MAX_RATIO, DEFAULT_MAX_SIZE
from ..compose.urls import URLRefused, parse_url
from ..errors import ConfigError
from ..oci.platforms import FEDORA_PLATFORMS

SECTION = "consumer_config.container"
#: Limits on what the network may cost (see docs/operating.md, "What is refused"): real
#: composeinfo.json and images.json files are a few hundred KiB to a few MiB; kojipkgs serves
#: Fedora's multi-GiB images at tens of MiB/s inside the data centre.
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
    (see :mod:`..bus.health`), for the OpenShift probes. Absent: no health server."""

    address: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    #: Seconds a compose in progress may go without finishing a step before ``/live`` says
    #: the process is stuck (default: twice ``skopeo_timeout``).
    stuck_after: float | None = Field(default=None, gt=0)
    #: Seconds between two "broker unreachable" log lines while the broker is down (the first
    #: after this long without a connection).
    broker_log_interval: float = Field(default=30.0, ge=1, le=86400)

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        return value


class SigningSettings(_Model):
    """``[consumer_config.container.signing]``: cosign signatures of what is published
    (:mod:`..signing`). Off by default."""

    enabled: bool = False
    #: PEM file of the ECDSA P-256 public key: every signature is checked with it before a tag
    #: moves, and the audit checks with it; what clients put in ``keyPath``.
    public_key: Path | None = None
    #: ``<prefix>KEY`` (the encrypted private key, PEM) and ``<prefix>PASSPHRASE``, from the
    #: environment or ``$CREDENTIALS_DIRECTORY``; used when ``command`` is not set.
    credential_prefix: str = "SIGNING_"
    #: An external signer instead of the key: payload on stdin, signature on stdout.
    command: list[str] | None = Field(default=None, min_length=1)
    command_timeout: float = Field(default=60.0, gt=0)

    @field_validator("public_key", mode="before")
    @classmethod
    def _path_from_str(cls, value: object) -> object:
        return Path(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _key_when_enabled(self) -> SigningSettings:
        if self.enabled and self.public_key is None:
            raise ValueError("public_key is required when enabled = true")
        if not self.credential_prefix:
            raise ValueError("credential_prefix must not be empty")
        return self


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
    #: How many downloads, conversions, pushes and registry reads run at once (default: the
    #: CPUs this process may use, as :func:`settings_from_document` is told them; else the
    #: machine's count).
    max_parallel: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    #: An image file may decompress to this many times its size (and always to 1 MiB) ...
    max_decompressed_ratio: float = Field(default=DEFAULT_MAX_RATIO, ge=1)
    #: ... and never to more than this many bytes.
    max_decompressed_size: int = Field(default=DEFAULT_MAX_SIZE, gt=0)
    retry: RetrySettings = RetrySettings()
    requeue: RequeueSettings = RequeueSettings()
    health: HealthSettings | None = None
    signing: SigningSettings = SigningSettings()

    def transfer_deadline(self, size: int) -> float:
        """Seconds moving ``size`` bytes over the network may take: ``http_deadline`` plus the
        size at ``min_download_rate`` (a download's deadline; 2 GiB: 8492 s by default)."""
        return self.http_deadline + size / self.min_download_rate

    def push_deadline(self, size: int) -> float:
        """Seconds one skopeo push of ``size`` bytes may take: ``skopeo_timeout``, or longer
        for an image that needs it at ``min_download_rate``, as a download is allowed."""
        return max(self.skopeo_timeout, self.transfer_deadline(size))

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


def settings_from_document(
    document: Mapping[str, Any], *, source: str = "config", cpus: int | None = None
) -> Settings:
    """Validate the ``consumer_config.container`` table of an already-parsed config.

    ``cpus``: the CPUs this process may use (:mod:`.cgroups` reads them), the default of
    ``max_parallel`` (at most 256)."""
    consumer_config = document.get("consumer_config")
    table = consumer_config.get("container") if isinstance(consumer_config, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: no [{SECTION}] table")
    if cpus is not None and "max_parallel" not in table:
        table = {**table, "max_parallel": max(1, min(256, cpus))}
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
