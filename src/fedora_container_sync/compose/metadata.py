"""A compose's metadata: ``composeinfo.json`` and ``images.json`` as productmd reads them, and
the facts about the compose that decide its tags. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ComposeError, one_line
from ..shown import shown


@dataclass(frozen=True)
class ComposeMetadata:
    """The parsed ``composeinfo.json`` and ``images.json`` (productmd objects)."""

    compose_id: str
    release_version: str
    info: Any
    images: Any


@dataclass(frozen=True)
class ComposeFacts:
    """What composeinfo.json says about a compose (the message says the same, less reliably)."""

    compose_id: str
    release_short: str
    release_version: str
    compose_type: str
    label: str | None = None


def parse_composeinfo(document: Any, *, compose_id: str) -> Any:
    """``metadata/composeinfo.json`` as a productmd ``ComposeInfo``."""
    from productmd.composeinfo import ComposeInfo

    return _deserialize(ComposeInfo(), document, "composeinfo.json", compose_id)


def parse_images(document: Any, *, compose_id: str) -> Any:
    """``metadata/images.json`` as a productmd ``Images``."""
    from productmd.images import Images

    return _deserialize(Images(), document, "images.json", compose_id)


def _deserialize(target: Any, document: Any, name: str, compose_id: str) -> Any:
    try:
        target.deserialize(document)
    except Exception as error:  # productmd raises ValueError, KeyError, TypeError...
        reason = (
            f"missing key {error.args[0]!r}"
            if isinstance(error, KeyError) and error.args
            else one_line(error)
        )
        raise ComposeError(
            f"{compose_id}: metadata/{name} is not valid productmd metadata: {reason}"
        ) from None
    return target


def metadata_of(info: Any, images: Any, *, compose_id: str) -> ComposeMetadata:
    """The compose's metadata, once it is known to describe the compose the message named."""
    described = info.compose.id
    if described != compose_id:
        raise ComposeError(f"{compose_id}: composeinfo.json describes compose {shown(described)}")
    listed = images.compose.id
    if listed != compose_id:
        raise ComposeError(f"{compose_id}: images.json lists the images of compose {shown(listed)}")
    return ComposeMetadata(described, str(info.release.version), info, images)


def compose_facts(metadata: ComposeMetadata) -> ComposeFacts:
    """What the tag rules need to know about the compose (:mod:`..gate.tags`)."""
    info = metadata.info
    return ComposeFacts(
        metadata.compose_id,
        str(info.release.short),
        metadata.release_version,
        str(info.compose.type),
        str(info.compose.label) if info.compose.label else None,
    )
