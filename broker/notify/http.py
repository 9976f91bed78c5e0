"""POST /notify/study-stable: a PACS says a study is complete (Orthanc's Lua OnStableStudy).

The caller proves itself with the shared secret [notify] http_token, as `Authorization: Bearer
TOKEN`, compared in constant time. The body is JSON: {"StudyInstanceUID": ..., "AccessionNumber":
...} (Orthanc's MainDicomTags fit as they are).
"""
from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, jsonify, request

log = logging.getLogger(__name__)

bp = Blueprint("notify", __name__, url_prefix="/notify")


@bp.post("/study-stable")
def study_stable():
    """Take the PACS's word that a study is stored; the EHR hears of it through the outbox."""
    runtime = current_app.extensions.get("broker.notify")
    token = runtime.settings.notify.http_token if runtime is not None else ""
    if not token or not runtime.notifier.enabled:
        return jsonify(error="study notifications are not enabled"), 404
    sent = request.headers.get("Authorization", "")
    scheme, _, secret = sent.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(secret.strip().encode(),
                                                             token.encode()):
        log.warning("study-stable from %s: wrong or missing token", request.remote_addr)
        return jsonify(error="unauthorized"), 401, {"WWW-Authenticate": "Bearer"}
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("StudyInstanceUID"), str) \
            or not body["StudyInstanceUID"].strip():
        return jsonify(error="expected JSON with StudyInstanceUID"), 400
    study = body["StudyInstanceUID"].strip()[:64]
    accession = str(body.get("AccessionNumber") or "").strip()[:16]
    sessions = current_app.extensions["broker.sessions"]
    with sessions.begin() as session:
        orders = runtime.notifier.pacs_reports_study(session, study, accession, "http")
    log.info("study-stable from %s: %d orders", request.remote_addr, orders)
    return jsonify(orders=orders), 202
