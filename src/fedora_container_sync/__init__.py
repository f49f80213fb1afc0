"""Publish a Fedora compose's container images to registries behind a manifest gate."""

__version__ = "0.1.0"
