"""Reading a compose: its bus message, its URLs, its metadata, which images it publishes
(pure); fetching its files, their archives, and the release numbers from Bodhi (I/O)."""
