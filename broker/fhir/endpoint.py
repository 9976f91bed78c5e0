"""The notification endpoint on the web listener: /fhir/notify (and /fhir/notify/Type/id, where
an R4 rest-hook with a payload PUTs the resource). Stored, then answered 200."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from broker.fhir.subscription import SECRET_HEADER

log = logging.getLogger(__name__)
bp = Blueprint("fhir", __name__)


def _outcome(status: int, severity: str, code: str, text: str):
    """An OperationOutcome answer (FHIR R4 RESTful API: errors are OperationOutcomes)."""
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": text}]}
    response = jsonify(body)
    response.status_code = status
    response.content_type = "application/fhir+json"
    return response


@bp.route("/fhir/notify", methods=["POST", "PUT"])
@bp.route("/fhir/notify/<resource_type>/<resource_id>", methods=["POST", "PUT"])
def notify(resource_type: str | None = None, resource_id: str | None = None):
    """Check the shared secret, store the notification, answer; the worker acts on it."""
    sync = current_app.extensions["broker.fhir"]
    peer = request.remote_addr or ""
    if not sync.check_secret(request.headers.get(SECRET_HEADER, "")):
        log.warning("fhir notification from %s to %s: missing or wrong %s header: refused",
                    peer, request.path, SECRET_HEADER)
        return _outcome(401, "error", "security", "missing or wrong shared secret")
    status, text = sync.receive(request.get_data(), request.path, peer)
    if status != 200:
        return _outcome(status, "error", "structure", text)
    return _outcome(200, "information", "informational", text)
