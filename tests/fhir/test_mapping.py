"""mappings/fhir.toml: validation with file and line, and a ServiceRequest read into an order."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from broker.fhir.mapping import load_fhir_mapping
from broker.fhir.orders import UnmappableOrder, read_service_request
from broker.mapping.procedures import MappingError
from broker.mapping.site import load_site_mappings
from broker.resources import mappings_dir

FIXTURES = Path(__file__).parents[2] / "fixtures" / "fhir"


@pytest.fixture(scope="module")
def mapping():
    return load_fhir_mapping(mappings_dir() / "fhir.toml")


@pytest.fixture(scope="module")
def site():
    return load_site_mappings(mappings_dir())


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone().replace(tzinfo=None)


def test_the_imaging_service_request_ig_defaults(mapping, site):
    order = read_service_request(_load("servicerequest_ct_head.json"), _load("patient_1001.json"),
                                 mapping, site, {"resourceType": "Practitioner",
                                                 "name": [{"family": "Hopper", "given": ["Grace"]}]},
                                 patient_id_issuer="HOSP")
    assert order.action == "schedule"
    request = order.request
    assert (request.placer_order_number, request.placer_issuer) == ("PL-1001", "PLACER")
    assert (request.filler_order_number, request.filler_issuer) == ("FL-1001", "urn:oid:1.2.3.4.5.4")
    assert (request.accession_number, request.accession_issuer) == ("ACC1001", "RIS")
    assert request.priority == "STAT"
    assert request.referring_physician == "Hopper^Grace"
    assert request.reason == "Head trauma"
    patient = request.patient
    assert (patient.primary.value, patient.primary.issuer) == ("MRN1001", "HOSP")
    assert patient.name.dicom() == "Björk^Ingrid^Maria"
    assert (patient.birth_date, patient.sex) == ("19720304", "F")
    assert patient.address == "Storgatan 1^Stockholm^11122"
    (procedure,) = request.procedures
    assert (procedure.code_value, procedure.code_scheme) == ("CTHEAD", "urn:oid:1.2.3.4.5.99")
    assert procedure.study_instance_uid == "1.2.826.0.1.3680043.10.1254.1001"
    (step,) = procedure.steps
    assert (step.modality, step.station_ae_titles) == ("CT", ("CT1",))
    assert step.start == _local("2026-11-24T09:30:00+00:00")
    assert step.end == _local("2026-11-24T09:50:00+00:00")


@pytest.mark.parametrize("status, action", [
    ("active", "schedule"), ("on-hold", "hold"), ("revoked", "cancel"),
    ("entered-in-error", "cancel"), ("completed", "ignore"), ("draft", "ignore")])
def test_status_says_what_to_do(mapping, site, status, action):
    resource = {**_load("servicerequest_ct_head.json"), "status": status}
    assert read_service_request(resource, _load("patient_1001.json"), mapping, site).action == action


def test_patient_id_is_the_medical_record_number_unless_an_issuer_is_configured(mapping, site):
    resource, patient = _load("servicerequest_ct_head.json"), _load("patient_1001.json")
    record = read_service_request(resource, patient, mapping, site).request.patient
    assert (record.primary.value, record.primary.issuer) == ("MRN1001", "HOSP")
    record = read_service_request(resource, patient, mapping, site,
                                  patient_id_issuer="urn:oid:9.9.9").request.patient
    assert record.primary.value == "OTHER-7"


def test_cancellation_needs_no_patient(mapping, site):
    resource = {**_load("servicerequest_ct_head.json"), "status": "revoked"}
    assert read_service_request(resource, None, mapping, site).request.placer_order_number == "PL-1001"


@pytest.mark.parametrize("change, reason", [
    ({"code": {"coding": [{"code": "NOPE"}]}}, "procedure code NOPE is not in procedures.toml"),
    ({"occurrenceDateTime": "tomorrow", "occurrencePeriod": None}, "start 'tomorrow'"),
])
def test_unmappable_orders_say_why(mapping, site, change, reason):
    resource = {k: v for k, v in {**_load("servicerequest_ct_head.json"), **change}.items()
                if v is not None}
    with pytest.raises(UnmappableOrder, match=reason):
        read_service_request(resource, _load("patient_1001.json"), mapping, site)


def test_missing_patient_and_patient_without_identifier(mapping, site):
    resource = _load("servicerequest_ct_head.json")
    with pytest.raises(UnmappableOrder, match="subject Patient/pat-1001 does not resolve"):
        read_service_request(resource, None, mapping, site)
    with pytest.raises(UnmappableOrder, match="has no identifier"):
        read_service_request(resource, {"resourceType": "Patient", "id": "p"}, mapping, site)


def test_placer_falls_back_to_the_resource_id(mapping, site):
    resource = _load("servicerequest_ct_head.json")
    resource["identifier"] = [i for i in resource["identifier"]
                              if i.get("type", {}).get("coding", [{}])[0].get("code") != "PLAC"]
    order = read_service_request(resource, _load("patient_1001.json"), mapping, site)
    assert order.request.placer_order_number == "sr-ct-head"


def test_progress_is_a_task_unless_the_file_says_otherwise(mapping, tmp_path):
    assert mapping.progress == "task"
    path = tmp_path / "fhir.toml"
    path.write_text('[order]\nplacer_order_number = "id"\nprocedure_codes = "code.coding"\n'
                    '[patient]\nidentifiers = "identifier"\n[notify]\nprogress = "status"\n')
    assert load_fhir_mapping(path).progress == "status"


def test_an_issuer_name_maps_back_to_its_system(mapping):
    assert mapping.system_of("HOSP") == "urn:oid:1.2.3.4.5.1"
    assert mapping.system_of("urn:oid:9.9") == "urn:oid:9.9"  # unlisted: as it is


@pytest.mark.parametrize("text, line, message", [
    ('[order]\nplacer_order_number = "id"\nprocedure_codes = "code.coding"\n'
     'start = "occurrence.where("\n[patient]\nidentifiers = "identifier"\n', 4, "start"),
    ('[order]\nplacer_order_number = "id"\nprocedure_codes = "code.coding"\n'
     'colour = "x"\n[patient]\nidentifiers = "identifier"\n', 4, "unknown value 'colour'"),
    ('[order]\nplacer_order_number = "id"\nprocedure_codes = "code.coding"\n'
     '[patient]\nidentifiers = "identifier"\nfamily = "name.family name"\n', 6, "family"),
    ('[order]\nplacer_order_number = "id"\n[patient]\nidentifiers = "identifier"\n', 1,
     "procedure_codes is required"),
    ('[order]\nplacer_order_number = "id"\nprocedure_codes = "code.coding"\n'
     '[patient]\nidentifiers = "identifier"\n[extras]\n', 6, "unknown section"),
    ('[order]\nplacer_order_number = "id"\nprocedure_codes = "code.coding"\n'
     'reason = "nosuchfunction()"\n[patient]\nidentifiers = "identifier"\n', 4, "reason"),
    ('[order]\nplacer_order_number = "id"\nprocedure_codes = "code.coding"\n'
     '[patient]\nidentifiers = "identifier"\n[notify]\nprogress = "fax"\n', 7,
     "progress 'fax' is not one of task, status, none"),
    ('[order]\nplacer_order_number = "id"\nprocedure_codes = "code.coding"\n'
     '[patient]\nidentifiers = "identifier"\n[notify]\ncolour = "x"\n', 7,
     "[notify] unknown value 'colour'"),
])
def test_errors_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "fhir.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as error:
        load_fhir_mapping(path)
    assert str(error.value).startswith(f"{path}:{line}:")
    assert message in str(error.value)
