"""Notifications to the EHR: latency from the trigger to the EHR's ACK, and draining a backlog.

1. Latency: per exam, the images are already in the PACS (Orthanc, when installed) and the
   modality sends its last N-SET COMPLETED (trigger "pacs"), or the PACS sends an IAN (trigger
   "ian"); measured until the EHR (the hl7 package's asyncio MLLP server) acknowledges the
   study-available ORU^R01. The broker runs with the default job interval.
   With sekmet-fhir installed, the same for FHIR out: from the last N-SET (trigger "mpps") until
   the FHIR server holds the ImagingStudy (searched by its Study Instance UID every 5 ms).
2. Drain: 5,000 queued notifications to one MLLP destination, by a running broker, against a
   bare send loop (the hl7 package's streams: write a block, read the ACK) in the same run.

    python bench/notify.py [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hl7.mllp import open_hl7_connection  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import InstanceAvailabilityNotification  # noqa: E402

from broker.config import FhirSettings, NotifySettings, PacsSettings  # noqa: E402
from broker.notify.messages import new_control_id  # noqa: E402
from broker.notify.outbox import enqueue  # noqa: E402
from broker.notify.triggers import HL7_KIND  # noqa: E402
from broker.service import Broker  # noqa: E402
from tests.conftest import make_test_settings  # noqa: E402
from tests.notify.chain import order_and_worklist, reference_of  # noqa: E402
from tests.notify.test_pacs_reports import _ian  # noqa: E402
from tests.support import orthanc as pacs_support  # noqa: E402
from tests.support.ehr import AsyncioEhr  # noqa: E402
from tests.support.modality import Modality, finished, in_progress  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _timed_ehr() -> tuple[AsyncioEhr, dict[str, float]]:
    acked: dict[str, float] = {}

    def answer(message):
        if message.message_type == "ORU^R01":
            acked[message.get("OBR", 18)] = time.perf_counter()  # the ACK is written now
        return "AA", ""
    return AsyncioEhr(answer=answer).start(), acked


def _wait(acked: dict[str, float], key: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while key not in acked:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no ORU for {key}")
        time.sleep(0.002)
    return acked[key]


def latency(folder: Path, trigger: str, exams: int, orthanc) -> list[float]:
    """Seconds from the last N-SET (trigger pacs) or the IAN (trigger ian) to the EHR's ACK."""
    ehr, acked = _timed_ehr()
    settings = make_test_settings(folder / trigger)
    pacs = PacsSettings()
    if orthanc is not None:
        pacs = PacsSettings(ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port)
    settings = replace(settings, pacs=pacs, notify=NotifySettings(
        hl7_to=(ehr.destination,), trigger=trigger))  # default job interval
    broker = Broker(settings)
    broker.start()
    samples = []
    try:
        for n in range(exams):
            item = order_and_worklist(broker, 1000 + n)
            ref = reference_of(item)
            done = finished(images=2)
            with Modality(broker.listeners.dicom[1], calling="CT1") as ct:
                _, uid = ct.create(in_progress([ref], patient_id=item.PatientID))
                if orthanc is not None:
                    orthanc.store(pacs_support.write_instances(
                        folder / f"dcm{trigger}{n}", str(item.StudyInstanceUID), done,
                        str(item.PatientID), str(item.AccessionNumber)))
                start = time.perf_counter()
                ct.set(done, uid)
            if trigger == "ian":
                start = time.perf_counter()
                ae = AE(ae_title="PACS")
                ae.add_requested_context(InstanceAvailabilityNotification)
                assoc = ae.associate("127.0.0.1", broker.listeners.dicom[1], ae_title="BROKER")
                assoc.send_n_create(_ian(str(item.StudyInstanceUID), done),
                                    InstanceAvailabilityNotification, f"1.2.3.{n}")
                assoc.release()
            samples.append(_wait(acked, str(item.AccessionNumber)) - start)
    finally:
        broker.stop()
        ehr.close()
    return samples


def fhir_latency(folder: Path, exams: int) -> list[float]:
    """Seconds from the last N-SET (trigger mpps) until the FHIR server holds the ImagingStudy."""
    from tests.support.sekmet import SekmetServer
    sekmet = SekmetServer()
    sekmet.start()
    # The HL7 fixture's patient (PID-3 778899^^^STMARYS): an unlisted issuer is its own system.
    sekmet.create({"resourceType": "Patient", "identifier": [{"system": "STMARYS",
                                                              "value": "778899"}]})
    settings = replace(make_test_settings(folder / "fhir"),
                       fhir=FhirSettings(base_url=sekmet.base_url, mode="poll"),
                       notify=NotifySettings(fhir=True, trigger="mpps"))  # default job interval
    broker = Broker(settings)
    broker.start()
    samples = []
    try:
        for n in range(exams):
            item = order_and_worklist(broker, 3000 + n)
            ref = reference_of(item)
            with Modality(broker.listeners.dicom[1], calling="CT1") as ct:
                _, uid = ct.create(in_progress([ref], patient_id=item.PatientID))
                start = time.perf_counter()
                ct.set(finished(images=2), uid)
            wanted = f"urn:dicom:uid|urn:oid:{item.StudyInstanceUID}"
            deadline = time.monotonic() + 60
            while not sekmet.search("ImagingStudy", identifier=wanted):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no ImagingStudy for {item.AccessionNumber}")
                time.sleep(0.005)
            samples.append(time.perf_counter() - start)
    finally:
        broker.stop()
        sekmet.stop()
    return samples


def _payloads(count: int) -> list[bytes]:
    return [(f"MSH|^~\\&|BROKER|RAD|EHR|HOSP|20261124100000||ORM^O01|{new_control_id()}|P|2.3.1\r"
             f"ORC|SC|P{i}^BROKER|F{i}^BROKER||CM\rOBR|1|P{i}|F{i}|CT^CT chest^L\r").encode()
            for i in range(count)]


async def _bare_loop(port: int, payloads: list[bytes]) -> None:
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    for payload in payloads:
        writer.writeblock(payload)
        await writer.drain()
        await reader.readblock()
    writer.close()


def drain(folder: Path, count: int) -> tuple[float, float]:
    """msg/s of a bare send loop and of a running broker draining `count` queued rows."""
    ehr = AsyncioEhr().start()
    try:
        start = time.perf_counter()
        asyncio.run(_bare_loop(ehr.port, _payloads(count)))
        bare = count / (time.perf_counter() - start)
        settings = replace(make_test_settings(folder / "drain"),
                           notify=NotifySettings(hl7_to=(ehr.destination,), trigger="mpps"))
        broker = Broker(settings)
        broker.start()
        payloads = _payloads(count)
        before = len(ehr.received)
        try:
            # The backlog appears at once (one commit), as after an EHR outage; timed from then.
            with broker.sessions.begin() as session:
                for i, payload in enumerate(payloads):
                    enqueue(session, ehr.destination, HL7_KIND, payload, f"order:{i}")
            start = time.perf_counter()
            ehr.wait_for(before + count, timeout=600)
            rate = count / (time.perf_counter() - start)
        finally:
            broker.stop()
    finally:
        ehr.close()
    return bare, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few exams, 500 notifications")
    args = parser.parse_args()
    exams, backlog = (4, 500) if args.quick else (20, 5000)
    folder = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    orthanc = None
    if pacs_support.available():
        orthanc = pacs_support.Orthanc(folder / "orthanc", {"BROKER": 104, "STORESCU": 104})
    try:
        for trigger in (["pacs"] if orthanc is not None else []) + ["ian"]:
            samples = [s * 1000 for s in latency(folder, trigger, exams, orthanc)]
            print(f"trigger {trigger:4} -> EHR ACK  p50 {statistics.median(samples):7.1f} ms  "
                  f"p95 {percentile(samples, 0.95):7.1f} ms  ({len(samples)} exams)")
    finally:
        if orthanc is not None:
            orthanc.stop()
    try:
        import sekmet  # noqa: F401 - the FHIR server of the test extras
    except ImportError:
        print("sekmet-fhir not installed: no FHIR figure")
    else:
        samples = [s * 1000 for s in fhir_latency(folder, exams)]
        print(f"trigger mpps -> FHIR ImagingStudy  p50 {statistics.median(samples):7.1f} ms  "
              f"p95 {percentile(samples, 0.95):7.1f} ms  ({len(samples)} exams)")
    # Rounds alternate the baseline and the broker: this machine's speed drifts by tens of
    # percent between minutes, so only a ratio taken in the same round means something.
    rounds = [drain(folder / f"round{n}", backlog) for n in range(2 if args.quick else 5)]
    ratios = sorted(rate / bare for bare, rate in rounds)
    print(f"drain {backlog} notifications, {len(rounds)} rounds  bare MLLP loop median "
          f"{statistics.median(b for b, _ in rounds):8.0f} msg/s  broker median "
          f"{statistics.median(r for _, r in rounds):8.0f} msg/s  ratio median "
          f"{statistics.median(ratios):.2f} (min {ratios[0]:.2f}, max {ratios[-1]:.2f})")
    pacs_support.remove(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
