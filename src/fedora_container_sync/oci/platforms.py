"""Fedora architecture names and OCI platforms, in both directions. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Platform:
    """An OCI ``platform`` object (the fields an image index entry carries)."""

    architecture: str
    os: str = "linux"
    variant: str | None = None

    def as_json(self) -> dict[str, str]:
        value = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            value["variant"] = self.variant
        return value

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


#: Fedora arch → OCI platform. aarch64 is arm64/v8, as skopeo and podman match it.
FEDORA_PLATFORMS: dict[str, Platform] = {
    "x86_64": Platform("amd64"),
    "aarch64": Platform("arm64", variant="v8"),
    "ppc64le": Platform("ppc64le"),
    "s390x": Platform("s390x"),
    "riscv64": Platform("riscv64"),
    "i686": Platform("386"),
    "armhfp": Platform("arm", variant="v7"),
}

#: The order entries take in an index and rows take in reports.
ARCH_ORDER = ("x86_64", "aarch64", "ppc64le", "s390x", "riscv64", "i686", "armhfp")


def platform_for(arch: str) -> Platform:
    """The OCI platform of a Fedora arch; unknown arches raise ``KeyError``."""
    return FEDORA_PLATFORMS[arch]


def fedora_arch(architecture: str, os: str = "linux", variant: str | None = None) -> str:
    """The Fedora arch name of an OCI platform.

    ``arm64`` without a variant is ``arm64/v8`` (what skopeo's matcher assumes). A platform
    Fedora has no name for comes back as ``os/arch[/variant]``, which never equals a compose
    arch, so the gate treats it as an arch the compose does not provide.
    """
    if os == "linux":
        if architecture == "arm64" and variant in (None, "", "v8"):
            return "aarch64"
        for arch, platform in FEDORA_PLATFORMS.items():
            if platform.architecture == architecture and (platform.variant or None) == (
                variant or None
            ):
                return arch
    return str(Platform(architecture, os, variant or None))


def arch_sort_key(arch: str) -> tuple[int, str]:
    return (ARCH_ORDER.index(arch) if arch in ARCH_ORDER else len(ARCH_ORDER), arch)


def sorted_arches(arches: Iterable[str]) -> list[str]:
    """Arches in the conventional order (x86_64, aarch64, ppc64le, s390x, then the rest)."""
    return sorted(arches, key=arch_sort_key)
