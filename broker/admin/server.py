"""The web listener: cheroot's production WSGI server in a thread of `broker serve`, with TLS
when [web] names a certificate, and a clean stop."""
from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from broker.config import Settings


def secret_key(settings: Settings) -> str:
    """The key that signs session cookies: [web] secret_key_file, or one made once in data_dir
    (never in the repository), readable by the broker's user only."""
    path = Path(settings.web.secret_key_file) if settings.web.secret_key_file else \
        settings.data_dir / "web-secret.key"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    # O_EXCL: two processes starting at once keep the first one's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


class WebServer:
    """cheroot serving one WSGI app on one address; port 0 picks a free port."""

    def __init__(self, app, settings: Settings) -> None:
        web = settings.web
        self.server = wsgi.Server((web.host, web.port), app, numthreads=web.threads,
                                  server_name="broker")
        if web.tls_cert_file:
            self.server.ssl_adapter = BuiltinSSLAdapter(web.tls_cert_file, web.tls_key_file)
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind, then serve in a background thread; returns the bound address."""
        self.server.prepare()
        self._thread = threading.Thread(target=self.server.serve, name="web", daemon=True)
        self._thread.start()
        host, port = self.server.bind_addr[:2]
        return host, port

    def stop(self) -> None:
        """Stop accepting, let the worker threads finish, and join."""
        self.server.stop()
        if self._thread is not None:
            self._thread.join(10)
