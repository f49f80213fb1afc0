"""Talking over the network: HTTP clients whose every request has a deadline and a byte cap,
and the one retry policy (I/O)."""
