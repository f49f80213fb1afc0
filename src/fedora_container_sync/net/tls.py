"""TLS settings of the HTTP clients: the containers convention for ``cert_dir``, the system's
trust store (as skopeo uses it), and one context per setting in a run.

Loading the trust store costs about 50 ms of CPU; a run makes one context per distinct setting
(:class:`TlsContexts`) and shares it between its clients, and a client that does not verify
never loads it. A long-running daemon still sees a renewed trust store or ``cert_dir`` at its
next run: nothing is kept between runs.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def tls_context(cert_dir: Path | None, *, verify: bool) -> ssl.SSLContext:
    """A client context: the system's trust store when ``verify``, none otherwise.

    In ``cert_dir``, ``*.crt`` files are CAs; each ``*.cert`` with a ``*.key`` beside it is a
    client certificate.
    """
    if verify:
        context = ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_dir is not None:
        for ca in sorted(cert_dir.glob("*.crt")):
            context.load_verify_locations(cafile=str(ca))
        for cert in sorted(cert_dir.glob("*.cert")):
            key = cert.with_suffix(".key")
            if key.exists():
                context.load_cert_chain(str(cert), str(key))
    return context


class TlsContexts:
    """The contexts of one run: one per (``cert_dir``, ``verify``), made when first needed."""

    def __init__(self) -> None:
        self._made: dict[tuple[Path | None, bool], ssl.SSLContext] = {}

    def get(self, cert_dir: Path | None, *, verify: bool) -> ssl.SSLContext:
        key = (cert_dir, verify)
        if key not in self._made:
            self._made[key] = tls_context(cert_dir, verify=verify)
        return self._made[key]
