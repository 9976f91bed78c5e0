from dataclasses import replace
from datetime import datetime

import pytest
from sqlalchemy import func, select

from broker.domain.records import (
    Identifier, OrderRequest, PatientRecord, PersonName, ProcedureRequest, StepRequest,
)
from broker.store.models import Patient, PatientIdentifier, ScheduledStep, StepStationAE
from broker.store.orders import change_order, existing_order
from broker.store.orders import OrderConflict, create_order
from broker.store.patients import upsert_patient

UIDS = iter(f"1.2.3.{n}" for n in range(1, 1000))


def _request(placer="P1", accession="A1", patient_id="MRN1", name="Müller^Jürgen"):
    family, given = name.split("^")
    return OrderRequest(
        patient=PatientRecord(identifiers=(Identifier(patient_id, "HOSP", "MR"),
                                           Identifier("999", "STATE")),
                              name=PersonName(family, given), birth_date="19700101", sex="M"),
        placer_order_number=placer, placer_issuer="EPIC", accession_number=accession,
        priority="ROUTINE",
        procedures=(ProcedureRequest("RP1", "CTHEAD", "L", "CT head", steps=(
            StepRequest("SPS1", "CT", ("CT1", "CT2"), start=datetime(2026, 11, 23, 9, 0)),)),))


def test_order_is_stored_with_patient_procedure_and_steps(sessions):
    with sessions.begin() as session:
        order = create_order(session, _request(), lambda: next(UIDS), "hl7")
        order_id = order.id
    with sessions() as session:
        step = session.scalars(select(ScheduledStep)).one()
        assert step.procedure.order.id == order_id
        assert step.station_ae_title == "CT1\\CT2"
        assert sorted(s.ae_title for s in step.stations) == ["CT1", "CT2"]
        assert step.procedure.study_instance_uid.startswith("1.2.3.")
        patient = step.procedure.order.patient
        assert patient.name == "Müller^Jürgen"
        assert patient.name_key == "MÜLLER^JÜRGEN"
        assert [(i.value, i.issuer) for i in patient.identifiers] == [("MRN1", "HOSP"), ("999", "STATE")]


def test_duplicate_placer_number_is_refused(sessions):
    with sessions.begin() as session:
        create_order(session, _request(), lambda: next(UIDS))
    with pytest.raises(OrderConflict, match="already exists"):
        with sessions.begin() as session:
            create_order(session, _request(accession="A2"), lambda: next(UIDS))


def test_duplicate_accession_is_refused(sessions):
    with sessions.begin() as session:
        create_order(session, _request(), lambda: next(UIDS))
    with pytest.raises(OrderConflict, match="accession"):
        with sessions.begin() as session:
            create_order(session, _request(placer="P2"), lambda: next(UIDS))


def test_known_patient_is_updated_not_duplicated(sessions):
    with sessions.begin() as session:
        create_order(session, _request(), lambda: next(UIDS))
    with sessions.begin() as session:
        create_order(session, _request(placer="P2", accession="A2", name="Mueller^Juergen"),
                     lambda: next(UIDS))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 1
        assert session.scalars(select(Patient)).one().family_name == "Mueller"
        assert session.scalar(select(func.count()).select_from(PatientIdentifier)) == 2


def test_merged_patient_resolves_to_survivor(sessions):
    with sessions.begin() as session:
        survivor = upsert_patient(session, PatientRecord((Identifier("S1", "HOSP"),)))
        loser = upsert_patient(session, PatientRecord((Identifier("L1", "HOSP"),)))
        session.flush()
        loser.merged_into_id = survivor.id
        survivor_id = survivor.id
    with sessions.begin() as session:
        found = upsert_patient(session, PatientRecord((Identifier("L1", "HOSP"),),
                                                      PersonName("New", "Name")))
        assert found.id == survivor_id


def test_station_rows_are_searchable(sessions):
    with sessions.begin() as session:
        create_order(session, _request(), lambda: next(UIDS))
    with sessions() as session:
        rows = session.scalars(select(StepStationAE.step_id).where(StepStationAE.ae_title == "CT2")).all()
        assert len(rows) == 1


def _timed(start, end, placer="P1"):
    """_request() with one step scheduled from `start` to `end`."""
    request = _request(placer=placer)
    [proc] = request.procedures
    step = replace(proc.steps[0], start=start, end=end)
    return replace(request, procedures=(replace(proc, steps=(step,)),))


def _stored_times(sessions):
    with sessions() as session:
        return session.execute(select(ScheduledStep.start_at, ScheduledStep.end_at)).one()


@pytest.mark.parametrize("end", [datetime(2026, 11, 23, 9, 20), None])
def test_step_end_is_stored_on_insert(sessions, end):
    with sessions.begin() as session:
        create_order(session, _timed(datetime(2026, 11, 23, 9, 0), end), lambda: next(UIDS))
    assert tuple(_stored_times(sessions)) == (datetime(2026, 11, 23, 9, 0), end)


# (start, end) of the XO's step -> (start_at, end_at) stored afterwards; the NW was 09:00-09:20.
@pytest.mark.parametrize("xo, expected", [
    ((datetime(2026, 11, 23, 14, 0), datetime(2026, 11, 23, 14, 20)),
     (datetime(2026, 11, 23, 14, 0), datetime(2026, 11, 23, 14, 20))),   # the end follows
    ((datetime(2026, 11, 23, 14, 0), None),
     (datetime(2026, 11, 23, 14, 0), None)),                              # old end not kept
    ((None, None),
     (datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 9, 20))),     # no new time: as was
    ((None, datetime(2026, 11, 23, 9, 45)),
     (datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 9, 45))),     # only a new end
])
def test_order_change_moves_the_step_end_with_its_start(sessions, xo, expected):
    with sessions.begin() as session:
        create_order(session, _timed(datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 9, 20)),
                     lambda: next(UIDS))
    with sessions.begin() as session:
        change_order(session, existing_order(session, "P1", "EPIC"), _timed(*xo),
                     lambda: next(UIDS))
    assert tuple(_stored_times(sessions)) == expected
