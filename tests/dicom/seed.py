"""A small worklist with one step per matching corner case, stored through the normal order path."""
from __future__ import annotations

from datetime import datetime
from itertools import count

from sqlalchemy import update
from sqlalchemy.orm import Session

from broker.domain.records import (
    Identifier, OrderRequest, PatientRecord, PersonName, ProcedureRequest, StepRequest,
)
from broker.store.models import ScheduledStep
from broker.store.orders import create_order

# step id: (family, given, ideographic, phonetic, patient id, issuer, birth, sex, accession,
#           study uid, modality, stations, start, status, performing physician)
STEPS = {
    "S1": ("Müller", "Jürgen", "", "", "P1", "HOSP", "19700101", "M", "A_1%", "1.2.3.1", "CT",
           ("CT1", "CT2"), datetime(2026, 11, 24, 9, 30), "SCHEDULED", "Jones^Ann"),
    "S2": ("MULLER", "Hans", "", "", "P2", "OTHER", "19800202", "M", "A21", "1.2.3.2", "MR",
           ("MR1",), datetime(2026, 11, 24, 14, 0), "ARRIVED", ""),
    "S3": ("Yamada", "Tarou", "山田^太郎", "やまだ^たろう", "P3", "HOSP", "", "M", "A3", "1.2.3.3",
           "CT", ("CT1",), datetime(2026, 11, 25, 8, 0), "SCHEDULED", ""),
    "S4": ("Smith", "John", "", "", "P4", "HOSP", "", "M", "AX1", "1.2.3.4", "US", ("US1",),
           datetime(2026, 11, 23, 23, 30), "COMPLETED", ""),
    "S5": ("smith", "jane", "", "", "P5", "HOSP", "", "F", "A5", "1.2.3.5", "CT", ("CT2",),
           datetime(2020, 1, 1, 10, 0), "SCHEDULED", ""),
    "S6": ("O'Brien", "Pat", "", "", "P6", "HOSP", "", "O", "", "1.2.3.6", "MR", ("MR1", "MR2"),
           datetime(2026, 11, 26, 7, 0), "READY", ""),
}
SERVED = {"S1", "S2", "S3", "S5", "S6"}
# Scheduled ends (Type 3 on the worklist); the other steps have none.
ENDS = {"S1": datetime(2026, 11, 24, 10, 5)}


def seed(session: Session) -> None:
    """Store STEPS as orders (one patient, order, procedure and step each)."""
    numbers = count(1)
    for step_id, row in STEPS.items():
        (family, given, ideo, phon, pid, issuer, birth, sex, acc, uid, modality, stations, start,
         status, performer) = row
        patient = PatientRecord(identifiers=(Identifier(pid, issuer),),
                                name=PersonName(family, given, ideographic=ideo, phonetic=phon),
                                birth_date=birth, sex=sex)
        step = StepRequest(step_id=step_id, modality=modality, station_ae_titles=stations,
                           start=start, end=ENDS.get(step_id), performing_physician=performer,
                           description=f"{modality} exam {step_id}")
        create_order(session, OrderRequest(
            patient=patient, placer_order_number=f"PL{next(numbers)}", accession_number=acc,
            priority="ROUTINE", procedures=(ProcedureRequest(
                procedure_id=f"RP{step_id}", code_value=f"C{step_id}", code_scheme="L",
                code_meaning=f"Procedure {step_id}", study_instance_uid=uid, steps=(step,)),)),
            new_uid=lambda: "1.2.3.999")
        session.execute(update(ScheduledStep).where(ScheduledStep.step_id == step_id)
                        .values(status=status))
    session.commit()
