"""What every stage of one run needs to know: the compose, the settings, the operator's options,
whether it is a dry run, and its private work directory. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config.settings import Settings
from ..signing.tally import Tally


@dataclass(frozen=True)
class PublishOptions:
    """An operator's one-off overrides (``replay --allow-drop ARCH``, ``replay --force``)."""

    #: Arches an index may lose in this run, on purpose.
    allow_drop: frozenset[str] = frozenset()
    #: Move tags even when they hold a newer compose (the rollback guard is off).
    force: bool = False


@dataclass(frozen=True)
class RunContext:
    """One run of one compose."""

    compose_id: str
    settings: Settings
    options: PublishOptions
    dry_run: bool
    #: A private, locked directory for this run (:func:`.workdir.run_directory`).
    work: Path
    #: The signatures the run wrote and found (its report counts them).
    signed: Tally = field(default_factory=Tally, compare=False)

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
