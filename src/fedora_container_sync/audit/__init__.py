"""The audit: what the registries serve and what is wrong with it (pure), read from the
registries and shown as a table, a JSON document, a status page and bus messages (I/O)."""
