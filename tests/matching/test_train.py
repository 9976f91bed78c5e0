"""Training on the site's patients: the stored model, and the scan and live search that use it."""
import random
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from broker.cli import main
from broker.config import MatchingSettings
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.matching.model_store import current_model, default_model, stored_model
from broker.matching.pairs import blocked_pairs
from broker.matching.scan import scan
from broker.matching.score import block_keys, profile
from broker.matching.train import TrainingError, train
from broker.store.models import AuditEvent, MatchingModel
from broker.store.patients import upsert_patient
from tests.support.matching import run_searches

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from population import Generator  # noqa: E402

HEADER = "identifier,issuer,family_name,given_name,birth_date,sex,address,phone\n"
SMALL = MatchingSettings(train_random_pairs=5000, train_min_patients=100)


def _population(count: int = 600, duplicates: int = 60):
    gen = Generator(seed=5)
    people = gen.people(count)
    dups = [gen.duplicate(p)[0] for p in random.Random(6).sample(people, duplicates)]
    return people + dups


def _store(sessions, records) -> None:
    with sessions.begin() as session:
        for r in records:
            upsert_patient(session, PatientRecord((Identifier(r.identifier, "HOSP"),),
                                                  PersonName(r.family, r.given), r.birth_date,
                                                  r.sex, r.address, r.phone), reconcile=False)


def test_train_stores_a_versioned_model_with_its_date_and_pair_counts(sessions):
    _store(sessions, _population())
    first = train(sessions, SMALL, actor="alice")
    second = train(sessions, SMALL, actor="alice")
    assert (first.version, second.version) == (1, 2)
    with sessions() as session:
        rows = session.scalars(select(MatchingModel).order_by(MatchingModel.id)).all()
        assert [r.version for r in rows] == [1, 2] and rows[1].patients == 660
        assert rows[1].candidate_pairs == second.candidate_pairs > 0
        assert rows[1].random_pairs == 5000 and rows[1].created_by == "alice"
        assert stored_model(session).info["version"] == 2
        assert session.scalar(select(AuditEvent.action).where(
            AuditEvent.action == "patients.train").limit(1)) == "patients.train"
    assert 0.01 < second.model.prior < 0.5


def test_train_refuses_an_empty_register(sessions):
    with pytest.raises(TrainingError):
        train(sessions, SMALL)


def test_a_site_without_a_trained_model_searches_with_the_shipped_one(sessions):
    with sessions() as session:
        assert stored_model(session) is None
        assert current_model(session) is default_model()


def test_scan_without_a_model_fits_one_first_and_reports_it(sessions):
    _store(sessions, _population())
    report = scan(sessions, SMALL)
    assert report.trained and report.model_version == 1
    again = scan(sessions, SMALL)
    assert not again.trained and again.model_version == 1
    assert len(again.flagged) >= 50  # the 60 duplicates, mostly found by a model fitted here


def test_scan_of_a_small_register_uses_the_shipped_model(sessions):
    _store(sessions, _population(60, 6))
    report = scan(sessions, SMALL)
    assert report.default_model and not report.trained
    with sessions() as session:
        assert stored_model(session) is None


def test_live_search_uses_the_newest_stored_model(sessions):
    _store(sessions, _population())
    train(sessions, SMALL)
    with sessions() as session:
        model = current_model(session)
    with sessions.begin() as session:
        upsert_patient(session, PatientRecord((Identifier("NEW1", "HOSP"),),
                                              PersonName("Lindqvst", "Anna"), "19800512", "F"))
        upsert_patient(session, PatientRecord((Identifier("NEW2", "HOSP"),),
                                              PersonName("Lindqvist", "Anna"), "19800512", "F"))
    run_searches(sessions)
    from broker.matching.queue import list_matches
    with sessions() as session:
        [entry] = list_matches(session)
    assert entry.fields["family_name"]["note"] == "one letter differs"
    assert entry.fields["family_name"]["points"] == pytest.approx(
        model.weight("family_name", "close"), abs=0.01)


@pytest.mark.parametrize("original, duplicate", [
    # Birth date wrong and the given name misspelt: the family sound and postcode still meet.
    (("Schepers", "Sarah", "19260705", "118 Tattersall Cres Kyogle 2212"),
     ("Schepoirs", "Isaac", "19861116", "118 Tattersall Cres Kyogle 2212")),
    # No birth date on one side, a typo in each name: house number and street meet.
    (("Weller", "", "19990716", "7 Wittenoom Crescent Ashford 4655"),
     ("Weller", "", "", "7 Wittenoom Crescent Ashford 4656")),
    # Names swapped and a birth year typo: the initials and the sounds meet.
    (("Fornarino", "William", "19830402", ""), ("William", "Fornarino", "19830402", "")),
    # Postcode typo, different birth year: family sound + given initial.
    (("Everett", "Kieran", "", "Eddy Crescent 0676"), ("Everett", "Kiara", "", "8 Eddy Crescent 6076")),
])
def test_blocking_rules_bring_typod_duplicates_together(original, duplicate):
    keys = [block_keys(profile(f, g, b, "", a)) for f, g, b, a in (original, duplicate)]
    assert keys[0] & keys[1]


def test_blocked_pairs_leave_out_oversized_blocks():
    profiles = {n: profile("Smith", f"Given{n}", "19800101") for n in range(1100)}
    pairs, skipped = blocked_pairs(profiles)
    assert skipped >= 1
    assert all(a < b for a, b in pairs)


def test_cli_train_then_scan_says_which_model_scored(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BROKER_MATCHING_TRAIN_RANDOM_PAIRS", "5000")
    rows = [f"{r.identifier},HOSP,{r.family},{r.given},{r.birth_date},{r.sex},"
            f"\"{r.address}\",{r.phone}" for r in _population(300, 30)]
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["patients", "import", str(path)]) == 0
    assert main(["patients", "scan"]) == 0
    assert "scored with the shipped default model" in capsys.readouterr().out
    assert main(["patients", "train"]) == 0
    out = capsys.readouterr().out
    assert "model version 1 trained on 330 patients" in out and "random pairs" in out
    monkeypatch.setenv("BROKER_MATCHING_TRAIN_MIN_PATIENTS", "100")
    assert main(["patients", "scan"]) == 0
    assert "default model" not in capsys.readouterr().out


def test_an_outdated_stored_model_is_refused_by_scan_and_live_search_falls_back(sessions):
    from broker.matching.model_store import save_model
    from broker.matching.score.model import OutdatedModel
    _store(sessions, _population())
    train(sessions, SMALL)
    with sessions.begin() as session:
        row = session.scalars(select(MatchingModel)).one()
        older = dict(row.parameters)
        older.pop("levels_version")  # as a broker before versioned levels stored it
        row.parameters = older
    with pytest.raises(OutdatedModel, match="broker patients train"):
        scan(sessions, SMALL)
    with sessions() as session:
        assert current_model(session) is default_model()
    assert save_model  # the next `train` stores a current model again
    assert train(sessions, SMALL).model.info["version"] == 2
