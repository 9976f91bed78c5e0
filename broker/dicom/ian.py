"""Instance Availability Notification SCP (PS3.4 Annex R, IHE RAD-49) on the broker's DICOM port.

A PACS sends an N-CREATE of SOP class 1.2.840.10008.5.1.4.33 naming a study's instances once it
holds them; the broker takes it as "the study is available" (see broker.notify.triggers).
pynetdicom raises one N-CREATE event for every SOP class, so the IAN handler sits in front of
the MPPS one and passes on whatever is not an IAN.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import InstanceAvailabilityNotification
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import utcnow
from broker.store.models import InboundMessage

log = logging.getLogger(__name__)

SUCCESS = 0x0000
MISSING_ATTRIBUTE = 0x0120  # PS3.7 C.4.2: Study Instance UID is Type 1 (PS3.3 C.4.23)
PROCESSING_FAILURE = 0x0110
# PS3.3 C.4.23.1: instances an IAN offers as retrievable.
RETRIEVABLE = {"ONLINE", "NEARLINE"}


def handle_ian(event: evt.Event, sessions: sessionmaker[Session],
               notifier: Any) -> tuple[int, Dataset | None]:
    """N-CREATE of an Instance Availability Notification (PS3.4 R.2)."""
    calling = event.assoc.requestor.ae_title
    try:
        ds = event.attribute_list
        study = str(ds.get("StudyInstanceUID", "") or "")
        if not study:
            log.warning("dicom IAN from %s: no Study Instance UID", calling)
            return MISSING_ATTRIBUTE, None
        retrievable = [item for series in ds.get("ReferencedSeriesSequence") or []
                       for item in series.get("ReferencedSOPSequence") or []
                       if str(item.get("InstanceAvailability", "ONLINE")).upper() in RETRIEVABLE]
        raw = json.dumps({"dataset": ds.to_json_dict()}).encode()
        with sessions.begin() as session:
            found = 0
            if retrievable and notifier is not None and notifier.enabled:
                found = notifier.pacs_reports_study(session, study,
                                                    str(ds.get("AccessionNumber", "") or ""), "ian")
            session.add(InboundMessage(channel="dicom", sender=calling, control_id=None,
                                       message_type="IAN N-CREATE", raw=raw, status="PROCESSED",
                                       error="" if found else "no order waits for this study",
                                       processed_at=utcnow(), attempts=1))
    except Exception:  # noqa: BLE001 - answer and keep serving; the cause is logged
        log.exception("dicom IAN from %s: cannot process it", calling)
        return PROCESSING_FAILURE, None
    log.info("dicom IAN from %s: %d retrievable instances, %d orders", calling,
             len(retrievable), found)
    if event.request.AffectedSOPInstanceUID is None:
        reply = Dataset()
        reply.AffectedSOPInstanceUID = generate_uid()  # PS3.7 10.1.5.1.4
        return SUCCESS, reply
    return SUCCESS, None


def with_ian(entries: list[Any], sessions: sessionmaker[Session], notifier: Any) -> list[Any]:
    """The handler list with every N-CREATE of an IAN routed to handle_ian."""
    routed = []
    for entry in entries:
        if entry[0] is evt.EVT_N_CREATE:
            handler, args = entry[1], list(entry[2]) if len(entry) > 2 else []
            entry = (evt.EVT_N_CREATE, _route, [handler, args, sessions, notifier])
        routed.append(entry)
    return routed


def _route(event: evt.Event, other: Callable[..., Any], args: list[Any],
           sessions: sessionmaker[Session], notifier: Any) -> Any:
    if str(event.request.AffectedSOPClassUID) == InstanceAvailabilityNotification:
        return handle_ian(event, sessions, notifier)
    return other(event, *args)
