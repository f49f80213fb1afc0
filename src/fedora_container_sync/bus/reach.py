"""Is the broker there? One TCP connection to ``amqp_url``'s host and port, before any work.

fedora-messaging's publisher waits its whole timeout (30 s) for a broker that is not there and
then says "Publishing timed out"; a ``replay`` that is to send result messages learns at once,
before it publishes anything, that they could not go out. Only the address is checked (no
AMQP, no TLS, no credentials): a broker that answers but refuses us still fails at the send,
with the broker's own reason.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from ..errors import ConfigError, TransientError

#: fedora-messaging's default ``amqp_url``.
DEFAULT_URL = "amqp://"
_PORTS = {"amqp": 5672, "amqps": 5671}


def broker_address(amqp_url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``amqp(s)://`` URL, with AMQP's defaults (localhost, 5672/5671)."""
    try:
        parts = urlsplit(amqp_url)
        port = parts.port
    except ValueError:
        raise ConfigError("amqp_url: not an amqp:// or amqps:// URL") from None
    if parts.scheme not in _PORTS:
        raise ConfigError("amqp_url: not an amqp:// or amqps:// URL")
    return parts.hostname or "localhost", port or _PORTS[parts.scheme]


def check_broker(amqp_url: str, *, timeout: float = 5.0, needed_for: str) -> None:
    """Raise :class:`TransientError` in one line when nothing accepts a connection at the
    broker's address within ``timeout`` seconds; ``needed_for`` says why we wanted it."""
    host, port = broker_address(amqp_url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else error.strerror or str(error)
        raise TransientError(
            f"the broker at {host}:{port} (amqp_url) is unreachable: {reason}; {needed_for}"
        ) from None
