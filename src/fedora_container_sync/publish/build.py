"""Build: download an image once (verified, decompressed), convert it once into a local OCI
layout annotated with the compose it came from, and remove what is no longer needed.

The work dir holds only images in flight: a download is removed once converted, a layout once
it is pushed everywhere it goes, and what a failed conversion wrote at once. A work dir that
cannot be written (full, read-only, an I/O error) fails that image only, in one line.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..compose.archive import OCI_ARCHIVE, unpack_oci_archive
from ..compose.fetch import ComposeFetcher, LocalImage
from ..compose.selection import ImageArtifact
from ..errors import PermanentError, SkopeoError, WorkDirFull
from ..oci.index import IndexEntry
from ..oci.manifest import ARCH, COMPOSE_ID, IMAGE_SHA256
from ..oci.platforms import fedora_arch
from ..oci.verify import verify_layout
from ..registry import skopeo
from ..registry.layout import LocalManifest, adopt_unpacked, annotate_layout, read_layout
from .context import RunContext
from .workdir import work_dir_error


@dataclass(frozen=True)
class PreparedImage:
    """An image downloaded, verified and converted into a local OCI layout, ready to push."""

    local: LocalImage
    layout: Path
    manifest: LocalManifest

    @property
    def artifact(self) -> ImageArtifact:
        return self.local.artifact

    def entry(self, compose_id: str) -> IndexEntry:
        """Its entry in an index."""
        artifact, manifest = self.artifact, self.manifest
        return IndexEntry(
            artifact.arch,
            manifest.media_type,
            manifest.digest,
            manifest.size,
            compose_id,
            artifact.sha256,
        )


def download(
    ctx: RunContext,
    fetcher: ComposeFetcher,
    artifact: ImageArtifact,
    *,
    on_bytes: Callable[[int], None] | None = None,
) -> LocalImage:
    """``on_bytes``: called with the bytes received so far as they come (for a display)."""
    with _space_for(ctx, artifact, "downloading"):
        return fetcher.download(artifact, ctx.work / "downloads", on_bytes=on_bytes)


def discard(local: LocalImage) -> None:
    """A dry run's verified download: not needed any more."""
    _remove(local)


def convert(ctx: RunContext, local: LocalImage) -> PreparedImage:
    """Convert a downloaded image into an OCI layout, annotated with the compose, the arch and
    the checksum of the file it came from; check that it is built for the arch listed."""
    artifact = local.artifact
    layout = ctx.work / "layouts" / artifact.work_name
    where = f"{ctx.compose_id}: {artifact.path}"
    # skopeo would extract an OCI archive with its own tar reader; it gets the directory
    # unpacked here instead, where nothing can be written through a link.
    unpacked = ctx.work / "unpacked" / artifact.work_name
    source = local.reference
    with _space_for(ctx, artifact, "converting"):
        try:
            layout.parent.mkdir(parents=True, exist_ok=True)
            (ctx.work / "tmp").mkdir(parents=True, exist_ok=True)
            adopted = False
            if local.unpacked:  # unpacked as it was downloaded
                unpacked = local.path
            elif local.transport == OCI_ARCHIVE:
                unpacked.parent.mkdir(parents=True, exist_ok=True)
                unpack_oci_archive(local.path, unpacked, where=where, consume=True)
                local.path.unlink()
            if local.transport == OCI_ARCHIVE:
                verify_layout(unpacked, where=where)  # skopeo fetches nothing from elsewhere
                source = f"oci:{unpacked}"
                # Compressed OCI layers skopeo would copy unchanged: the unpacked directory
                # becomes the layout, without a second copy of every blob.
                adopted = adopt_unpacked(unpacked, layout)
            if not adopted:
                skopeo.run(
                    skopeo.convert_argv(
                        ctx.settings.skopeo, source, layout, tmpdir=ctx.work / "tmp"
                    ),
                    timeout=ctx.settings.skopeo_timeout,
                    what=f"conversion of {artifact.path}",
                    hide_env=ctx.secret_env,
                )
            annotate_layout(
                layout,
                {COMPOSE_ID: ctx.compose_id, ARCH: artifact.arch, IMAGE_SHA256: artifact.sha256},
                where=where,
            )
            verify_layout(layout, where=f"{where}: converted")  # what skopeo will push
        except BaseException:
            # What a failed conversion wrote goes at once: the other images need the space.
            shutil.rmtree(layout, ignore_errors=True)
            raise
        finally:
            # The work dir holds only what is still needed: at most a few images at a time.
            _remove(local)
            shutil.rmtree(unpacked, ignore_errors=True)
    manifest = read_layout(layout, where=where)
    built_for = fedora_arch(
        manifest.platform.architecture, manifest.platform.os, manifest.platform.variant
    )
    if built_for != artifact.arch:
        raise PermanentError(
            f"{where}: listed as {artifact.arch} but the image is built for {built_for}"
        )
    return PreparedImage(local, layout, manifest)


def _remove(local: LocalImage) -> None:
    if local.unpacked:
        shutil.rmtree(local.path, ignore_errors=True)
    else:
        local.path.unlink(missing_ok=True)


def remove(image: PreparedImage) -> None:
    """The layout of an image pushed everywhere it goes."""
    shutil.rmtree(image.layout, ignore_errors=True)


@contextlib.contextmanager
def _space_for(ctx: RunContext, artifact: ImageArtifact, step: str) -> Iterator[None]:
    """A work dir that cannot be written (full: no space, no quota, a file size limit; or
    read-only, an I/O error) fails this image only, in one line."""
    about = f"{ctx.compose_id}: {artifact.path}: "
    try:
        yield
    except OSError as error:
        raise work_dir_error(error, ctx.settings.work_dir, step, about=about) from None
    except SkopeoError as error:
        words = skopeo.full_disk(str(error))
        if words is None:
            raise
        full = f"{about}work_dir {ctx.settings.work_dir} is full"
        raise WorkDirFull(f"{full} while {step}: skopeo: {words}") from None
