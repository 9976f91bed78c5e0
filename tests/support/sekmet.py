"""sekmet-fhir as the EHR's FHIR R4 server: started on 127.0.0.1 and a free port, stopped at
the end; plus builders of the resources an EHR would create."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import requests

from tests.support.postgres import free_port

FHIR_JSON = "application/fhir+json"
IMAGING = {"coding": [{"system": "http://snomed.info/sct", "code": "363679005",
                       "display": "Imaging"}]}
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
MRN_SYSTEM = "urn:oid:1.2.3.4.5.1"
PLACER_SYSTEM = "urn:oid:1.2.3.4.5.3"
ACCESSION_SYSTEM = "urn:oid:1.2.3.4.5.11"
# A topic covering every ServiceRequest create and update (sekmet's built-in one only
# covers creation), as a site would define it for the backport mode.
OWN_TAG_SYSTEM = "urn:broker:fhir"  # the tag the broker marks its Subscription with
TOPIC_URL = "http://example.org/fhir/SubscriptionTopic/imaging-order-change"


class SekmetServer:
    """`sekmet serve --config FILE` with its simulator off (it would complete orders itself)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="broker-sekmet-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self.process: subprocess.Popen | None = None
        self.http = requests.Session()
        self.http.headers.update({"Accept": FHIR_JSON})

    def _config(self) -> Path:
        path = self.folder / "sekmet.yaml"
        path.write_text(
            f"base_url: {self.base_url}\nhost: 127.0.0.1\nport: {self.port}\n"
            f"data_dir: {self.folder / 'data'}\ndb_path: {self.folder / 'sekmet.db'}\n"
            "log_inbound: false\nsimulator: {enabled: false}\n"
            "validation: {inbound: warn}\n")
        return path

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it answers /metadata."""
        sekmet = Path(sys.executable).with_name("sekmet")
        self.process = subprocess.Popen(
            [str(sekmet), "serve", "--config", str(self._config())], cwd=self.folder,
            stdout=open(self.folder / "sekmet.log", "ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "SEKMET_CONFIG": str(self._config())})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sekmet exited: {(self.folder / 'sekmet.log').read_text()[-2000:]}")
            try:
                if self.http.get(f"{self.base_url}/metadata", timeout=2).status_code == 200:
                    self.ensure_topic()
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("sekmet did not start in time")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def restart(self) -> None:
        """Stop and start on the same port and database (its heartbeat thread is gone then)."""
        self.stop()
        self.start()

    # -- REST ---------------------------------------------------------------------------------

    def create(self, resource: dict) -> dict:
        answer = self.http.post(f"{self.base_url}/{resource['resourceType']}", json=resource,
                                headers={"Content-Type": FHIR_JSON}, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def update(self, resource: dict) -> dict:
        answer = self.http.put(f"{self.base_url}/{resource['resourceType']}/{resource['id']}",
                               json=resource, headers={"Content-Type": FHIR_JSON}, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def read(self, reference: str) -> dict:
        answer = self.http.get(f"{self.base_url}/{reference}", timeout=30)
        answer.raise_for_status()
        return answer.json()

    def search(self, resource_type: str, **params: str) -> list[dict]:
        answer = self.http.get(f"{self.base_url}/{resource_type}", params=params, timeout=30)
        answer.raise_for_status()
        return [e["resource"] for e in answer.json().get("entry", [])
                if (e.get("search") or {}).get("mode", "match") == "match"]

    def switch_off_subscriptions(self) -> None:
        """Every Subscription not yet off is set off (FHIR R4 subscription-status)."""
        for sub in self.search("Subscription", _count="1000"):
            if sub.get("status") != "off":
                self.update({**sub, "status": "off"})

    def ensure_topic(self) -> None:
        """The site's SubscriptionTopic (R5 cross-version extensions on Basic, as sekmet reads
        topics): every ServiceRequest create or update."""
        st = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
        trigger = [{"url": "resource",
                    "valueUri": "http://hl7.org/fhir/StructureDefinition/ServiceRequest"},
                   {"url": "supportedInteraction", "valueCode": "create"},
                   {"url": "supportedInteraction", "valueCode": "update"},
                   {"url": "fhirPathCriteria", "valueString": "true"}]
        self.update({
            "resourceType": "Basic", "id": "topic-imaging-order-change",
            "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types",
                                 "code": "SubscriptionTopic"}]},
            "modifierExtension": [{"url": f"{st}.status", "valueCode": "active"}],
            "extension": [{"url": f"{st}.url", "valueUri": TOPIC_URL},
                          {"url": f"{st}.title", "valueString": "Imaging order changed"},
                          {"url": f"{st}.resourceTrigger", "extension": trigger}]})


_numbers = itertools.count(1)


def new_key(prefix: str = "F") -> str:
    """A number unique in this test session (placer, accession, patient ID)."""
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}{next(_numbers)}"


def patient_resource(mrn: str, family: str = "Doe", given: str = "Jane") -> dict:
    return {"resourceType": "Patient",
            "identifier": [{"type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                            "system": MRN_SYSTEM, "value": mrn}],
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": "female", "birthDate": "1970-05-01"}


def service_request(patient_id: str, placer: str, accession: str, start: datetime,
                    code: str = "CTHEAD", status: str = "active") -> dict:
    return {"resourceType": "ServiceRequest", "status": status, "intent": "order",
            "category": [IMAGING],
            "identifier": [
                {"type": {"coding": [{"system": V2_0203, "code": "PLAC"}]},
                 "system": PLACER_SYSTEM, "value": placer},
                {"type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                 "system": ACCESSION_SYSTEM, "value": accession}],
            "code": {"coding": [{"system": "urn:oid:1.2.3.4.5.99", "code": code}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "occurrenceDateTime": start.astimezone().isoformat(timespec="seconds"),
            "priority": "routine", "requester": {"display": "Dr. Who"}}
