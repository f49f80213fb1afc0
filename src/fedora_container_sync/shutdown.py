"""Whether this process is being stopped: SIGTERM (systemd, OpenShift), SIGINT, or
fedora-messaging's shutdown in the consumer.

One flag for the whole process. Once it is set, work pools start no more work, skopeo no more
children, retries give up, and every run ends at once with
:class:`~fedora_container_sync.errors.Interrupted`, removing its auth files and run directory
on the way out. What has to be ended actively (running skopeo children) registers a hook.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_requested = threading.Event()
_hooks: list[Callable[[], None]] = []


def request() -> None:
    """Stop: set the flag, then run every hook (in the order they were registered)."""
    _requested.set()
    for hook in list(_hooks):
        hook()


def requested() -> bool:
    return _requested.is_set()


def on_request(hook: Callable[[], None]) -> None:
    """Call ``hook`` (with no argument) when a stop is requested."""
    _hooks.append(hook)


def reset() -> None:
    """Clear the flag, for a process that goes on after a stop (tests)."""
    _requested.clear()
