"""Container registry types (pure) and the HTTP client (I/O)."""
