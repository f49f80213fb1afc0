"""A test-only fedora-messaging callback: the real :class:`Consumer`, in a process that dies
(SIGKILL, as the kernel's OOM killer would kill it) at the first step of the compose named by
``$FCS_TEST_CRASH_ON``, every time that compose is delivered - a message that kills its
consumer. Configure ``callback = "support.crashing:CrashingConsumer"`` with ``tests/`` on
``PYTHONPATH``."""

from __future__ import annotations

import logging
import os
import signal

from fedora_container_sync.consumer import Consumer
from fedora_container_sync.publish.progress import STEPS


class _KillOnStep(logging.Filter):
    def __init__(self, compose_id: str) -> None:
        super().__init__()
        self._prefix = f"compose {compose_id}: "

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(self._prefix):
            os.kill(os.getpid(), signal.SIGKILL)
        return True


class CrashingConsumer(Consumer):
    def __init__(self) -> None:
        super().__init__()
        logging.getLogger(STEPS).addFilter(_KillOnStep(os.environ["FCS_TEST_CRASH_ON"]))
