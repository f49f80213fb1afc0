"""Signing what is published: cosign ("sigstore") signatures in ``sha256-<hex>.sig`` tags."""
