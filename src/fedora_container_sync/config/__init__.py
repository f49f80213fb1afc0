"""The configuration: the settings model (pure), the bus keys it checks (pure), and reading
it from the file and the environment (I/O)."""
