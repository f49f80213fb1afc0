"""What every stage of one run needs to know: the compose, the settings, the operator's options,
whether it is a dry run, and its private work directory. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..config.settings import Settings


@dataclass(frozen=True)
class PublishOptions:
    """An operator's one-off overrides (``replay --allow-drop ARCH``, ``replay --force``)."""

    #: Arches an index may lose in this run, on purpose.
    allow_drop: frozenset[str] = frozenset()
    #: Move tags even when they hold a newer compose (the rollback guard is off).
    force: bool = False


class SignatureCount(Protocol):
    """Where a run counts the signatures it wrote and found (:class:`..signing.tally.Tally`,
    added to by the workers, read by the report)."""

    def add(
        self,
        registry: str,
        repository: str,
        *,
        written: Iterable[tuple[str, str]] = (),
        present: Iterable[tuple[str, str]] = (),
    ) -> None: ...

    @property
    def written(self) -> int: ...

    @property
    def present(self) -> int: ...


@dataclass(frozen=True)
class RunContext:
    """One run of one compose."""

    compose_id: str
    settings: Settings
    options: PublishOptions
    dry_run: bool
    #: A private, locked directory for this run (:func:`.workdir.run_directory`).
    work: Path
    #: Where the signatures the run wrote and found are counted (None: not counted).
    signed: SignatureCount | None = None

    @property
    def secret_env(self) -> tuple[str, ...]:
        """The environment variables holding credentials (registries, signing): skopeo reads them
        from its auth file only, never from our environment."""
        signing = self.settings.signing.credential_prefix
        registries = tuple(
            f"{registry.credential_prefix}{suffix}"
            for registry in self.settings.registries
            if registry.credential_prefix
            for suffix in ("USER", "PASSWORD")
        )
        return (*registries, f"{signing}KEY", f"{signing}PASSPHRASE")
