"""One root exception, branched by the reaction each failure calls for.

Only the CLI and the consumer catch :class:`SyncError` broadly; everything else raises the
branch that tells them what to do:

* :class:`UsageError` - the operator handed us something unusable (arguments, config file,
  message file). Fix the input; retrying cannot help. ``replay`` exits 2.
* :class:`MessageError` - a bus message that cannot or must not be acted on (malformed body,
  location outside the allowlist). Drop it with the reason; ``replay`` exits 2.
* :class:`TransientError` - the world may heal (network, timeouts, registry 5xx/429).
  Retry, then requeue the message.
* :class:`PermanentError` - the compose or registry answered, and the answer is final
  (missing metadata, checksum mismatch, unauthorized, bad archive). Drop with the reason.

Every message is one line and never contains a secret.
"""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error this project raises on purpose."""

    def __str__(self) -> str:
        # Errors are printed as one line on stderr and in logs: fold any newline.
        return " ".join(super().__str__().split())


class UsageError(SyncError):
    """Bad arguments, configuration or message file: nothing was attempted."""


class ConfigError(UsageError):
    """The configuration file is missing, unreadable or invalid."""


class MessageError(SyncError):
    """A message that cannot or must not be acted on; drop it and log why."""


class TransientError(SyncError):
    """A failure that may succeed later: retry, then requeue.

    ``retry_after`` carries a server's ``Retry-After`` (seconds), when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Interrupted(TransientError):
    """The process is being stopped (SIGTERM, SIGINT, the consumer's shutdown): the work was
    cut short. Not retried; the consumer hands the message back to be redone."""


class PermanentError(SyncError):
    """A definite failure: retrying the same input gives the same answer."""


class ComposeError(PermanentError):
    """The compose's metadata or images are missing, malformed or fail verification."""


class RegistryError(PermanentError):
    """A registry refused a request for a reason retrying cannot fix."""


class RegistryUnavailable(TransientError):
    """A registry could not be reached or answered with a transient error."""


class WorkDirError(TransientError):
    """The work dir could not be written (read-only, an I/O error, gone): the compose is fine,
    this machine is not, so the message is retried later."""


class WorkDirFull(WorkDirError):
    """The work dir ran out of space (or quota, or file size) for one image."""


class TagRaceError(TransientError):
    """Another writer moved a tag right after we wrote it, every time we tried."""


class SkopeoError(PermanentError):
    """skopeo failed in a way retrying cannot fix."""


class SkopeoTransientError(TransientError):
    """skopeo failed with a network, timeout, rate-limit or 5xx error."""


def one_line(error: BaseException) -> str:
    """A foreign exception's message folded onto one line (its type name if it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


class ReleaseLookupError(PermanentError):
    """The release lookup (Bodhi) answered, but not with usable release numbers."""


def about_compose(compose_id: str, error: BaseException | str) -> str:
    """The text of ``error`` for a line that already names the compose (``compose X: ...``).

    Errors raised inside a run name their compose first (``X: Container/...: sha256
    mismatch``), so that they make sense on their own; a log line that starts with
    ``compose X:`` drops that leading ``X: `` to name the compose once.
    """
    text = str(error)
    for prefix in (f"compose {compose_id}: ", f"{compose_id}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text
