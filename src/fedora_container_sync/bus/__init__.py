"""The message bus: the messages this project sends and the consumer's answers (pure), sending
them, the dead-letter queue and the consumer's health endpoints (I/O)."""
