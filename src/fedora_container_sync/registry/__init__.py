"""Talking to container registries (I/O): the HTTP API client and its authentication, skopeo,
and the local OCI layouts it pushes from."""
