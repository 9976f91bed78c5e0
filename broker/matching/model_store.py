"""Where matching models live: the shipped default (a JSON file in the package) and the
versioned models `broker patients train` fitted on the site's patients (table matching_model)."""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from importlib import resources

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.matching.score.model import Model, OutdatedModel
from broker.store.models import MatchingModel

DEFAULT_MODEL_FILE = "default_model.json"
log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def default_model() -> Model:
    """The model shipped with the broker, for a site that has not trained its own."""
    text = resources.files("broker.matching").joinpath(DEFAULT_MODEL_FILE).read_text("utf-8")
    return Model.from_dict(json.loads(text))


def newest_model_id(session: Session) -> int | None:
    """Id of the newest stored model, or None when the site has trained none."""
    return session.scalar(select(func.max(MatchingModel.id)))


# Stored models never change (a retrain adds a version), so one parsed per database and row
# serves every later search: the live search asks for the current model every run.
_PARSED: dict[tuple[str, int, object], Model] = {}


def stored_model(session: Session) -> Model | None:
    """The newest model trained on this site, or None; OutdatedModel when it was fitted on
    comparison levels this broker no longer uses (retrain)."""
    newest = session.execute(select(MatchingModel.id, MatchingModel.created_at)
                             .order_by(MatchingModel.id.desc()).limit(1)).first()
    if newest is None:
        return None
    key = (str(session.get_bind().url), newest[0], newest[1])
    if key not in _PARSED:
        row = session.get(MatchingModel, newest[0])
        if len(_PARSED) >= 8:
            _PARSED.clear()
        _PARSED[key] = Model.from_dict(row.parameters)
    return _PARSED[key]


def current_model(session: Session) -> Model:
    """The model that scores this site's pairs: its newest trained one, else the shipped one
    (also when the newest is outdated: live searches go on, and the log says to retrain)."""
    try:
        return stored_model(session) or default_model()
    except OutdatedModel as exc:
        log.warning("%s; live searches use the shipped default model meanwhile", exc)
        return default_model()


def save_model(session: Session, model: Model, patients: int, candidate_pairs: int,
               random_pairs: int, actor: str) -> MatchingModel:
    """Store a fitted model as the next version."""
    version = (session.scalar(select(func.max(MatchingModel.version))) or 0) + 1
    now = utcnow()
    info = {**model.info, "version": version, "trained_at": now.isoformat(timespec="seconds"),
            "patients": patients, "candidate_pairs": candidate_pairs, "random_pairs": random_pairs}
    row = MatchingModel(version=version, created_at=now, patients=patients,
                        candidate_pairs=candidate_pairs, random_pairs=random_pairs,
                        created_by=actor[:64],
                        parameters=Model.from_dict({**model.as_dict(), "info": info}).as_dict())
    session.add(row)
    session.flush()
    return row
