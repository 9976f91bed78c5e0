"""[fhir] settings, and how the FHIR client authenticates (against a small local HTTP server)."""
from __future__ import annotations

import base64
import json
import threading
from typing import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from broker.config import ConfigError, FhirSettings, load_settings
from broker.fhir.client import FhirClient, FhirError


def _load(**env: str):
    return load_settings(path=None, environ={f"BROKER_FHIR_{k.upper()}": v for k, v in env.items()},
                         default_file=None).fhir


def test_defaults_and_environment():
    assert _load() == FhirSettings()
    fhir = _load(base_url="http://ehr/fhir", mode="poll", poll_seconds="5",
                 callback_url="http://lb/fhir/notify")
    assert (fhir.base_url, fhir.mode, fhir.poll_seconds, fhir.callback_url) == (
        "http://ehr/fhir", "poll", 5.0, "http://lb/fhir/notify")
    assert fhir.criteria == "ServiceRequest?category=http://snomed.info/sct|363679005"


@pytest.mark.parametrize("env, message", [
    ({"mode": "websocket"}, "fhir.mode"),
    ({"auth": "kerberos"}, "fhir.auth"),
    ({"poll_seconds": "0"}, "fhir.poll_seconds"),
    ({"base_url": "ftp://x"}, "fhir.base_url"),
    ({"base_url": "http://x/fhir", "mode": "backport"}, "fhir.topic"),
    ({"base_url": "http://x/fhir", "criteria": "Patient?x=1"}, "fhir.criteria"),
    ({"base_url": "http://x/fhir", "auth": "bearer"}, "fhir.token"),
    ({"base_url": "http://x/fhir", "auth": "client-credentials", "token_url": "http://t"},
     "fhir.client_id"),
    ({"base_url": "http://x/fhir", "auth": "client-credentials", "token_url": "http://t",
      "client_id": "c"}, "fhir.client_secret or fhir.private_key_file"),
])
def test_wrong_values_name_the_setting(env, message):
    with pytest.raises(ConfigError, match=message):
        _load(**env)


@pytest.fixture
def server() -> Iterator[tuple[str, list]]:
    """A FHIR-ish server recording each request's Authorization header."""
    seen: list = []

    @Request.application
    def app(request: Request) -> Response:
        if request.path == "/token":
            seen.append(("token", request.headers.get("Authorization"),
                         request.form.get("grant_type"), request.form.get("client_assertion")))
            return Response(json.dumps({"access_token": "tok-1", "expires_in": 3600}),
                            content_type="application/json")
        seen.append((request.path, request.headers.get("Authorization")))
        if request.path.endswith("/missing"):
            return Response("", status=404)
        if request.path.endswith("/broken"):
            return Response("<html>", status=200)
        return Response(json.dumps({"resourceType": "Patient", "id": "1"}),
                        content_type="application/fhir+json")

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", seen
    httpd.shutdown()


def test_basic_bearer_and_client_credentials(server):
    url, seen = server
    FhirClient(FhirSettings(base_url=url, auth="basic", username="u", password="p")).read("Patient/1")
    FhirClient(FhirSettings(base_url=url, auth="bearer", token="t0")).read("Patient/1")
    client = FhirClient(FhirSettings(base_url=url, auth="client-credentials",
                                     token_url=f"{url}/token", client_id="c", client_secret="s"))
    client.read("Patient/1")
    client.read("Patient/2")  # the token is reused until it expires
    basic = "Basic " + base64.b64encode(b"u:p").decode()
    assert seen == [("/Patient/1", basic), ("/Patient/1", "Bearer t0"),
                    ("token", "Basic " + base64.b64encode(b"c:s").decode(), "client_credentials",
                     None),
                    ("/Patient/1", "Bearer tok-1"), ("/Patient/2", "Bearer tok-1")]


def test_missing_is_none_and_garbage_is_an_error(server):
    url, _ = server
    client = FhirClient(FhirSettings(base_url=url))
    assert client.read("Patient/missing") is None
    with pytest.raises(FhirError, match="not JSON"):
        client.read("Patient/broken")
    with pytest.raises(FhirError, match="ConnectionError"):
        FhirClient(FhirSettings(base_url="http://127.0.0.1:9")).read("Patient/1")


def test_client_credentials_with_a_signed_assertion(server, tmp_path):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    url, seen = server
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "client.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    FhirClient(FhirSettings(base_url=url, auth="client-credentials", token_url=f"{url}/token",
                            client_id="c", private_key_file=str(path))).read("Patient/1")
    (_, authorization, grant, assertion), request = seen
    assert (authorization, grant, request) == (None, "client_credentials",
                                               ("/Patient/1", "Bearer tok-1"))
    claims = jwt.decode(assertion, key.public_key(), algorithms=["RS384"], audience=f"{url}/token")
    assert (claims["iss"], claims["sub"]) == ("c", "c")
