"""The mapping bench page: paste an HL7 order or a FHIR ServiceRequest, see the worklist
items it would produce."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, render_template, request

from broker.admin.fhir_bench import try_fhir
from broker.admin.mapping_bench import try_order
from broker.admin.messages import intake
from broker.resources import mappings_dir

bp = Blueprint("bench", __name__)
MAX_CHARS = 64 * 1024


@bp.route("/bench", methods=["GET", "POST"])
def page():
    """GET: the empty form; POST: the result (POST keeps the pasted message out of URLs)."""
    text = request.form.get("message", "")[:MAX_CHARS] if request.method == "POST" else ""
    result = None
    if text.strip():
        settings = current_app.config["BROKER_SETTINGS"]
        folder = Path(settings.hl7.mappings_dir) if settings.hl7.mappings_dir else mappings_dir()
        # A FHIR resource is JSON; anything else is read as HL7.
        reader = try_fhir if text.lstrip().startswith("{") else try_order
        result = reader(text, intake().ctx, folder)
    return render_template("bench.html", text=text, result=result)
