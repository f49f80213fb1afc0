"""The keys fedora-messaging reads from the config file, checked before a run starts. Pure.

A typo there (``callbak``, a ``[tls]`` table lacking a key) would otherwise surface only after
a run published, or make fedora-messaging ignore the setting silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from .settings import describe_validation_error


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
