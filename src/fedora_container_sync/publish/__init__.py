"""Publishing a compose: read what the compose lists and every registry holds, decide a plan
(pure), act on it, verify by reading back. :mod:`.pipeline` is the place to start."""
