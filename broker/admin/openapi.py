"""The OpenAPI 3.0 document of /api/v1/, written from one compact table of the endpoints."""
from __future__ import annotations

from typing import Any

from broker import __version__

# (method, path, summary, query parameters, admin only)
ENDPOINTS: tuple[tuple[str, str, str, tuple[str, ...], bool], ...] = (
    ("get", "/worklist", "Scheduled steps of a day", ("date", "modality", "station", "status",
                                                      "q", "limit", "offset"), False),
    ("get", "/orders/{id}", "An order with procedures, steps and timeline", (), False),
    ("get", "/patients/{id}", "A patient with identifiers and merges", (), False),
    ("get", "/matches", "Match review queue entries", ("status", "limit", "offset"), False),
    ("post", "/matches/{id}/link", "Link an open entry (merge)", (), True),
    ("post", "/matches/{id}/dismiss", "Dismiss an open entry", (), True),
    ("post", "/patients/{id}/unmerge", "Undo the merge of this patient", (), True),
    ("get", "/messages", "Stored inbound messages", ("status", "sender", "channel", "date",
                                                    "before", "limit"), False),
    ("get", "/messages/{id}", "One message with raw text, error and ACK", (), False),
    ("post", "/messages/{id}/reprocess", "Reprocess a FAILED or REJECTED message", (), True),
    ("get", "/outbox", "Notifications not delivered", ("status", "before", "limit"), False),
    ("post", "/outbox/{id}/retry", "Retry a failed or dead notification", (), True),
    ("post", "/outbox/{id}/discard", "Give up a dead notification; those held behind it go", (),
     True),
    ("post", "/steps/{id}/{action}", "arrive, cancel, hold or release a step", (), True),
    ("get", "/audit", "Audit events", ("actor", "action", "before", "limit"), True),
)
_INTEGERS = {"limit", "offset", "before"}


def _operation(method: str, path: str, summary: str, query: tuple[str, ...],
               admin: bool) -> dict[str, Any]:
    params = [{"name": n, "in": "path", "required": True,
               "schema": {"type": "string" if n == "action" else "integer"}}
              for n in ("id", "action") if "{" + n + "}" in path]
    params += [{"name": n, "in": "query", "required": False,
                "schema": {"type": "integer" if n in _INTEGERS else "string"}} for n in query]
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {
        "application/json": {"schema": {"type": "object"}}}},
        "401": {"description": "no valid bearer token"}}
    if admin:
        responses["403"] = {"description": "the token's role is not admin"}
    if method == "post":
        responses["409"] = {"description": "refused; the error says why"}
    return {"summary": summary + (" (admin)" if admin else ""), "parameters": params,
            "responses": responses}


def document() -> dict[str, Any]:
    """The whole document."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, query, admin in ENDPOINTS:
        paths.setdefault(path, {})[method] = _operation(method, path, summary, query, admin)
    return {"openapi": "3.0.3",
            "info": {"title": "broker admin API", "version": __version__},
            "servers": [{"url": "/api/v1"}], "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}]}
