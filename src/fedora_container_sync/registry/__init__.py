"""Talking to container registries (I/O): the HTTP API client and its authentication."""
