"""The FHIR resources of the notifications, as built (no server): their shape, and R4 validity
as fhir.resources (R4B models, what sekmet-fhir validates with) sees it, when installed."""
from datetime import datetime, timezone

import pytest

from broker.notify.fhir_out import (
    IMAGING_STUDY, TASK, Links, Planned, StudyFacts, decode, describe, encode, imaging_study,
    relative, study_identifier, task, token, with_references,
)

NOW = datetime(2026, 11, 24, 9, 40, tzinfo=timezone.utc)
FACTS = StudyFacts(study_instance_uid="1.2.826.0.1.3680043.10.1254.778899.1",
                   accession_number="ACC778", accession_system="urn:oid:1.2.3.4.5.11",
                   modality="CT", started=datetime(2026, 11, 24, 9, 35, 12), series=1,
                   instances=3, description="CT chest with contrast")


def _valid(resource: dict) -> None:
    models = pytest.importorskip("fhir.resources.R4B")
    models.get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_an_available_imaging_study_carries_the_study_uid_and_accession():
    planned = Planned(IMAGING_STUDY, 7, resource=imaging_study(FACTS))
    study = with_references(planned, "ServiceRequest/sr1", "Patient/p1")
    assert study["status"] == "available"
    assert study["identifier"][0] == {"use": "official", "system": "urn:dicom:uid",
                                      "value": "urn:oid:1.2.826.0.1.3680043.10.1254.778899.1"}
    accession = study["identifier"][1]
    assert accession["type"]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]
    assert (accession["system"], accession["value"]) == ("urn:oid:1.2.3.4.5.11", "ACC778")
    assert study["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
    assert study["subject"] == {"reference": "Patient/p1"}
    assert study["modality"] == [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                  "code": "CT"}]
    assert (study["numberOfSeries"], study["numberOfInstances"]) == (1, 3)
    assert study["started"].startswith("2026-11-24T09:35:12")  # with the site's offset
    _valid(study)


def test_without_a_service_request_there_is_no_based_on_and_no_accession_system():
    facts = StudyFacts(study_instance_uid="1.2.3", accession_number="A1")
    study = with_references(Planned(IMAGING_STUDY, 1, resource=imaging_study(facts)), "",
                            "Patient/p1")
    assert "basedOn" not in study and "system" not in study["identifier"][1]
    assert "numberOfSeries" not in study  # not known: left out, not 0
    _valid(study)


@pytest.mark.parametrize("code, status", [("IP", "in-progress"), ("CM", "completed"),
                                          ("DC", "cancelled")])
def test_the_task_follows_the_order_and_is_found_by_its_service_request(code, status):
    resource = task(code, NOW, started=datetime(2026, 11, 24, 9, 35),
                    ended=datetime(2026, 11, 24, 9, 39))
    done = with_references(Planned(TASK, 7, resource=resource), "ServiceRequest/sr1",
                           "Patient/p1")
    assert (done["status"], done["intent"]) == (status, "order")
    assert done["identifier"] == [{"system": "urn:broker:fhir:task", "value": "sr1"}]
    assert done["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
    assert done["focus"] == {"reference": "ServiceRequest/sr1"}
    assert done["for"] == {"reference": "Patient/p1"}
    assert done["lastModified"] == "2026-11-24T09:40:00Z"
    assert ("end" in done["executionPeriod"]) == (code != "IP")
    _valid(done)


def test_a_payload_survives_the_outbox_and_says_what_it_writes():
    planned = Planned(TASK, 7, Links(request_identifiers=("urn:oid:1|ORD1",),
                                     patient_identifiers=("urn:oid:2|778899",)),
                      task("IP", NOW))
    assert decode(encode(planned)) == planned
    assert describe(encode(planned)) == "Task" and describe(b"not json") == "?"


def test_search_tokens_escape_the_search_syntax():
    assert token("urn:oid:1.2", "A|B,C") == "urn:oid:1.2|A\\|B\\,C"
    assert study_identifier("1.2.3") == "urn:dicom:uid|urn:oid:1.2.3"
    assert relative("http://ehr/fhir/Patient/1", "http://ehr/fhir/") == "Patient/1"
    assert relative("Patient/1", "http://ehr/fhir") == "Patient/1"
