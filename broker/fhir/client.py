"""A small FHIR R4 REST client (requests): read, search with paging, create, update, auth."""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import requests

from broker.config import FhirSettings

FHIR_JSON = "application/fhir+json"
TIMEOUT = (5, 30)  # connect, read (seconds)


class FhirError(RuntimeError):
    """The FHIR server could not be reached or refused a request; the message says which."""

    def __init__(self, text: str, status: int | None = None) -> None:
        super().__init__(text)
        self.status = status


class FhirClient:
    """REST calls against one FHIR base URL, authenticated as [fhir] auth says."""

    def __init__(self, settings: FhirSettings) -> None:
        self.base = settings.base_url.rstrip("/")
        self.settings = settings
        self._local = threading.local()
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()

    def _session(self) -> requests.Session:
        # One HTTP session per thread: requests does not promise a shared one is thread-safe.
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers.update({"Accept": FHIR_JSON})
            if self.settings.auth == "basic":
                session.auth = (self.settings.username, self.settings.password)
        return session

    def _auth_headers(self) -> dict[str, str]:
        if self.settings.auth == "bearer":
            return {"Authorization": f"Bearer {self.settings.token}"}
        if self.settings.auth == "client-credentials":
            return {"Authorization": f"Bearer {self._access_token()}"}
        return {}

    def _access_token(self) -> str:
        """An OAuth 2.0 client_credentials access token (RFC 6749 4.4), renewed before expiry:
        with the client secret (client_secret_basic), or with a signed JWT assertion (RFC 7523,
        as SMART Backend Services asks) when a private key is configured."""
        with self._token_lock:
            if self._token and self._token[1] > time.monotonic() + 30:
                return self._token[0]
            data = {"grant_type": "client_credentials"}
            auth = None
            if self.settings.private_key_file:
                data.update(client_assertion_type="urn:ietf:params:oauth:client-assertion-type:"
                            "jwt-bearer", client_assertion=self._assertion())
            else:
                auth = (self.settings.client_id, self.settings.client_secret)
            try:
                answer = requests.post(self.settings.token_url, timeout=TIMEOUT, data=data,
                                       auth=auth)
            except requests.RequestException as exc:
                raise FhirError(f"token endpoint: {exc.__class__.__name__}") from None
            if answer.status_code != 200:
                raise FhirError(f"token endpoint answered {answer.status_code}",
                                answer.status_code)
            body = answer.json()
            self._token = (body["access_token"],
                           time.monotonic() + float(body.get("expires_in", 300)))
            return self._token[0]

    def _assertion(self) -> str:
        """A short-lived JWT naming this client, signed with its private key (RS384, the
        algorithm SMART Backend Services requires servers to support)."""
        import jwt  # PyJWT
        key = Path(self.settings.private_key_file).read_text(encoding="utf-8")
        now = int(time.time())
        return jwt.encode({"iss": self.settings.client_id, "sub": self.settings.client_id,
                           "aud": self.settings.token_url, "iat": now, "exp": now + 300,
                           "jti": uuid.uuid4().hex}, key, algorithm="RS384")

    def request(self, method: str, url: str, *, params: Any = None,
                body: dict | None = None, headers: dict[str, str] | None = None) -> dict | None:
        """One call; the parsed JSON answer (None for 404 on a read), or FhirError. `headers`:
        extra request headers (If-Match, If-None-Exist)."""
        if not url.startswith(("http://", "https://")):
            url = f"{self.base}/{url.lstrip('/')}"
        headers = {**(headers or {}), **self._auth_headers()}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        try:
            answer = self._session().request(method, url, params=params, json=body,
                                             headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise FhirError(f"{method} {url}: {exc.__class__.__name__}") from None
        if answer.status_code == 404 and method == "GET":
            return None
        if answer.status_code >= 300:
            detail = outcome_text(answer)
            raise FhirError(f"{method} {url}: HTTP {answer.status_code}"
                            + (f": {detail}" if detail else ""), answer.status_code)
        if not answer.content:
            return None
        try:
            return answer.json()
        except ValueError:
            raise FhirError(f"{method} {url}: the answer is not JSON", answer.status_code) from None

    def read(self, reference: str) -> dict | None:
        """GET Type/id (relative or absolute reference); None when it does not exist."""
        return self.request("GET", reference)

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> dict:
        """One search page (a searchset Bundle)."""
        return self.request("GET", resource_type, params=params) or {}

    def next_page(self, bundle: dict) -> dict | None:
        """The page the Bundle's `next` link points to, or None on the last page."""
        link = next((l["url"] for l in bundle.get("link", []) if l.get("relation") == "next"),
                    None)
        return self.request("GET", link) if link else None

    def pages(self, resource_type: str, params: list[tuple[str, str]]) -> Iterator[dict]:
        """Every page of a search, following `next` links (FHIR R4 3.1.1.5.7 paging)."""
        page: dict | None = self.search(resource_type, params)
        while page:
            yield page
            page = self.next_page(page)

    def create(self, resource: dict) -> dict:
        """POST a new resource; the stored resource as the server returns it."""
        return self.request("POST", resource["resourceType"], body=resource) or {}

    def update(self, resource: dict) -> dict:
        """PUT Type/id; the stored resource as the server returns it."""
        return self.request("PUT", f"{resource['resourceType']}/{resource['id']}",
                            body=resource) or {}


def outcome_text(answer: requests.Response) -> str:
    """The issues of an OperationOutcome answer (FHIR R4 3.1.0.4.2: errors come as one), as
    "severity code: diagnostics; ..."; "" when the body is not one."""
    try:
        body = answer.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in body.get("issue") or []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        texts.append(f"{issue.get('severity', '')} {issue.get('code', '')}: {text}".strip(": "))
    return "; ".join(t for t in texts if t)[:1000]


def entries(bundle: dict, mode: str | None = None) -> list[dict]:
    """The resources of a Bundle, optionally only those of search mode `mode` (match/include)."""
    return [e["resource"] for e in bundle.get("entry", []) or []
            if isinstance(e.get("resource"), dict)
            and (mode is None or (e.get("search") or {}).get("mode", "match") == mode)]
