"""The web listener of `broker serve`: cheroot in-process, over TLS when configured, and a
clean stop that frees the port."""
from __future__ import annotations

import re
import socket
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from http.cookiejar import CookieJar

import pytest

from broker.admin.accounts import add_user
from broker.config import WebSettings
from broker.service import Broker
from tests.conftest import make_test_settings


def _certificate(folder) -> tuple[str, str]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def test_tls_serves_the_ui_with_a_secure_cookie_and_stops_cleanly(tmp_path):
    cert, key = _certificate(tmp_path)
    settings = replace(make_test_settings(tmp_path), web=WebSettings(
        port=0, tls_cert_file=cert, tls_key_file=key))
    settings = replace(settings, hl7=replace(settings.hl7, enabled=False),
                       dicom=replace(settings.dicom, enabled=False))
    broker = Broker(settings)
    broker.start()
    host, port = broker.listeners.web
    try:
        with broker.sessions.begin() as session:
            add_user(session, "tess", "tls password 1", "admin", "test")
        context = ssl.create_default_context(cafile=cert)
        # Redirects are not followed, so the sign-in's own answer and cookie can be read.
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                             urllib.request.HTTPCookieProcessor(CookieJar()),
                                             _NoRedirect())
        base = f"https://{host}:{port}"
        with opener.open(f"{base}/healthz", timeout=10) as response:
            assert response.status == 200
        form = opener.open(f"{base}/login", timeout=10).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        body = urllib.parse.urlencode({"username": "tess", "password": "tls password 1",
                                       "csrf_token": token}).encode()
        # Over HTTPS the CSRF check wants a same-site Referer too, as a browser sends it.
        request = urllib.request.Request(f"{base}/login", data=body,
                                         headers={"Referer": f"{base}/login"})
        try:
            answer = opener.open(request, timeout=10)
        except urllib.error.HTTPError as error:  # how urllib hands over an unfollowed redirect
            answer = error
        assert answer.status == 302
        cookie = answer.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        broker.stop()
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection((host, port), timeout=5)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
