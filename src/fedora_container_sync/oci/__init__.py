"""OCI value types (pure): platforms, media types, manifests, image indexes - the plain data
every other layer reads and writes, apart from any transport."""
