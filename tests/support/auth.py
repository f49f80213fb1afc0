"""The test registries' user and its password: distinctive, so a leak is easy to find."""

USER = "sync-bot"
PASSWORD = "correct-horse-battery-staple-4F7q"
