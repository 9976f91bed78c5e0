"""Orders put straight into the store, for tests that start at the modality's side."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from broker.domain.records import (
    Identifier, OrderRequest, PatientRecord, PersonName, ProcedureRequest, StepRequest,
)
from broker.store.orders import create_order


def schedule(sessions: sessionmaker[Session], n: int, patient_id: str = "778899",
             modalities: tuple[str, ...] = ("CT",), start: datetime = datetime(2026, 11, 24, 9, 0)
             ) -> dict:
    """Order number `n`: accession ACC<n>, procedure RP<n>, study 1.2.826.0.1.<n>, one step per
    modality (SPS<n>-<modality>). Returns the keys an MPPS would name and the row ids."""
    steps = tuple(StepRequest(f"SPS{n}-{m}", m, (f"{m}1",), start=start) for m in modalities)
    request = OrderRequest(
        patient=PatientRecord((Identifier(patient_id, "STMARYS", "MR"),),
                              PersonName("Björk", "Ingrid"), "19720304", "F"),
        placer_order_number=f"P{n}", placer_issuer="EPIC", accession_number=f"ACC{n}",
        procedures=(ProcedureRequest(f"RP{n}", "CTCHEST", "L", "CT chest",
                                     study_instance_uid=f"1.2.826.0.1.{n}", steps=steps),))
    with sessions.begin() as session:
        order = create_order(session, request, lambda: "unused", "test")
        steps = order.procedures[0].steps
        return {"order": order.id, "steps": [s.id for s in steps], "study": f"1.2.826.0.1.{n}",
                "accession": f"ACC{n}", "rp": f"RP{n}", "sps": [s.step_id for s in steps],
                "patient": order.patient_id}
